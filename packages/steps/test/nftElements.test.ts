import { describe, expect, test } from "bun:test"
import { Effect } from "effect"
import { Backend, type NftTable } from "@tscni/backend"
import { attachmentKey, collectStaleNftElements, keyedTable, keyedTablePrefix, nftElements, nftElementsHandle } from "../src/index.ts"
import { control, failureOf, onKernel, stepContract } from "./harness.ts"

const skeleton = (policy: string): Omit<NftTable, "name"> => ({
  family: "inet",
  sets: [
    { name: "pods4", type: "ipv4_addr" },
    { name: "ports", type: "inet_proto . inet_service", map: "ipv4_addr . inet_service" }
  ],
  chains: [{ name: "postrouting", base: { type: "nat", hook: "postrouting", priority: 100 }, rules: [`ip saddr @pods4 ${policy}`] }]
})
const TABLE = keyedTable("t", "net1", skeleton("masquerade"))
/** the same network under other settings: another table, same prefix */
const OTHER_SETTINGS = keyedTable("t", "net1", skeleton("accept"))
const elements = (ip: string, port: number) => [
  { set: "pods4", key: ip },
  { set: "ports", key: `tcp . ${port}`, value: `${ip} . 80` }
]
const owner = (n: number) => `t:net1:pod${n}`
const add = (netns: string, n: number, ip: string, port: number, table = TABLE) =>
  nftElements.apply({ netns, table, owner: owner(n), elements: elements(ip, port) })
const listed = (netns: string, table = TABLE) => Backend.use((backend) => backend.listNftElements(netns, table))

describe("nftElements", () => {
  test("table names: per network and per skeleton, one prefix per network", () => {
    expect(TABLE.name).toMatch(/^tscni-t-[0-9a-f]{8}-[0-9a-f]{8}$/)
    expect(TABLE.name.startsWith(keyedTablePrefix("t", "net1"))).toBe(true)
    expect(OTHER_SETTINGS.name).not.toBe(TABLE.name)
    expect(OTHER_SETTINGS.name.startsWith(keyedTablePrefix("t", "net1"))).toBe(true)
    expect(keyedTable("t", "net2", skeleton("masquerade")).name.startsWith(keyedTablePrefix("t", "net1"))).toBe(false)
  })

  describe("a pod joining a table other pods use", () => {
    stepContract({
      step: nftElements,
      prepare: Effect.gen(function*() {
        const netns = yield* Backend.use((backend) => backend.createNetns("node"))
        // another pod's elements must survive everything below
        yield* add(netns, 2, "10.0.0.9", 9090)
        return { netns, table: TABLE, owner: owner(1), elements: elements("10.0.0.2", 8080) }
      }),
      expectDiff: (handle, diff) => {
        expect(handle).toMatchObject({ created: false, adopted: [], owner: owner(1) })
        expect(diff).toEqual([
          `node: + nft element inet ${TABLE.name} pods4 { 10.0.0.2 } comment "${owner(1)}"`,
          `node: + nft element inet ${TABLE.name} ports { tcp . 8080 : 10.0.0.2 . 80 } comment "${owner(1)}"`
        ].map((line) => line.replace("node:", "/var/run/netns/node:")))
      },
      observe: (handle) =>
        Effect.gen(function*() {
          expect((yield* listed(handle.netns)).map((e) => e.comment).sort()).toEqual([owner(1), owner(1), owner(2), owner(2)])
        }),
      removeByHand: (handle) => Backend.use((backend) => backend.deleteNftElements(handle.netns, TABLE, elements("10.0.0.2", 8080))),
      breakByHand: (handle) =>
        Effect.gen(function*() {
          const backend = yield* Backend
          yield* backend.deleteNftElements(handle.netns, TABLE, [{ set: "ports", key: "tcp . 8080" }])
          yield* backend.addNftElements(handle.netns, TABLE, [{ set: "ports", key: "tcp . 8080", value: "10.0.0.2 . 81", comment: owner(1) }])
        })
    })
  })

  describe("the first pod: the table is created with its elements, and goes with them", () => {
    stepContract({
      step: nftElements,
      prepare: Effect.map(Backend.use((backend) => backend.createNetns("node")), (netns) => ({ netns, table: TABLE, owner: owner(1), elements: elements("10.0.0.2", 8080) })),
      expectDiff: (handle, diff) => {
        expect(handle.created).toBe(true)
        expect(diff.filter((line) => line.includes("+ nft table"))).toHaveLength(1)
        expect(diff.filter((line) => line.includes("+ nft element"))).toHaveLength(2)
        expect(diff).toHaveLength(3)
      },
      observe: (handle) => Effect.map(listed(handle.netns), (all) => expect(all).toHaveLength(2)),
      removeByHand: (handle) => Backend.use((backend) => backend.deleteNftTable(handle.netns, TABLE)),
      breakByHand: (handle) => Backend.use((backend) => backend.deleteNftElements(handle.netns, TABLE, [{ set: "pods4", key: "10.0.0.2" }]))
    })
  })

  test("a rollback keeps the table it created when another pod has added to it since", () => {
    onKernel(Effect.gen(function*() {
      const netns = yield* Backend.use((backend) => backend.createNetns("node"))
      const first = yield* add(netns, 1, "10.0.0.2", 8080)
      expect(first.created).toBe(true)
      yield* add(netns, 2, "10.0.0.3", 8081)
      yield* nftElements.undo(first)
      expect((yield* listed(netns)).map((e) => e.comment)).toEqual([owner(2), owner(2)])
    }))
  })

  test("a key another pod holds is refused (AlreadyExists) and nothing changes; DEL of the refused pod leaves it", () => {
    onKernel(Effect.gen(function*() {
      const mock = yield* control
      const netns = yield* Backend.use((backend) => backend.createNetns("node"))
      yield* add(netns, 2, "10.0.0.9", 8080)
      const before = mock.snapshot()
      const error = failureOf(yield* Effect.exit(add(netns, 1, "10.0.0.2", 8080)))
      expect(error?._tag === "BackendError" ? [error.reason, error.message] : error).toEqual([
        "AlreadyExists",
        `nftElements: ports { tcp . 8080 } in table ${TABLE.name} belongs to ${owner(2)} (10.0.0.9 . 80)`
      ])
      expect(mock.diff(before, mock.snapshot())).toEqual([])
      // the runtime's DEL after the failed ADD: by key, but only the pod's own
      yield* nftElements.undo(nftElementsHandle(netns, TABLE, owner(1), elements("10.0.0.2", 8080)))
      expect(mock.diff(before, mock.snapshot())).toEqual([])
    }))
  })

  test("a repeated ADD adopts the pod's own elements; its rollback leaves them", () => {
    onKernel(Effect.gen(function*() {
      const mock = yield* control
      const netns = yield* Backend.use((backend) => backend.createNetns("node"))
      yield* add(netns, 1, "10.0.0.2", 8080)
      const before = mock.snapshot()
      const again = yield* add(netns, 1, "10.0.0.2", 8080)
      expect(again.adopted).toEqual([{ set: "pods4", key: "10.0.0.2" }, { set: "ports", key: "tcp . 8080" }])
      yield* nftElements.undo(again)
      expect(mock.diff(before, mock.snapshot())).toEqual([])
    }))
  })

  test("DEL without the keys finds the pod's elements by owner in every table of its network, and nothing else", () => {
    onKernel(Effect.gen(function*() {
      const netns = yield* Backend.use((backend) => backend.createNetns("node"))
      yield* add(netns, 1, "10.0.0.2", 8080)
      yield* add(netns, 1, "10.0.1.2", 8081, OTHER_SETTINGS)
      yield* add(netns, 2, "10.0.0.3", 8082)
      const elsewhere = keyedTable("t", "net2", skeleton("masquerade"))
      yield* add(netns, 1, "10.0.0.2", 8080, elsewhere)
      yield* nftElements.undo(nftElementsHandle(netns, TABLE, owner(1), undefined))
      expect((yield* listed(netns)).map((e) => e.comment)).toEqual([owner(2), owner(2)])
      expect(yield* listed(netns, OTHER_SETTINGS)).toEqual([])
      expect(yield* listed(netns, elsewhere)).toHaveLength(2)
    }))
  })

  test("DEL with keys finds a pod added under other settings in its network's other table", () => {
    onKernel(Effect.gen(function*() {
      const netns = yield* Backend.use((backend) => backend.createNetns("node"))
      yield* add(netns, 2, "10.0.0.3", 8082)
      yield* add(netns, 1, "10.0.0.2", 8080, OTHER_SETTINGS)
      yield* nftElements.undo(nftElementsHandle(netns, TABLE, owner(1), elements("10.0.0.2", 8080)))
      expect(yield* listed(netns, OTHER_SETTINGS)).toEqual([])
      expect(yield* listed(netns)).toHaveLength(2)
    }))
  })

  test("GC removes the elements of attachments no longer valid, and tables left empty", () => {
    onKernel(Effect.gen(function*() {
      const netns = yield* Backend.use((backend) => backend.createNetns("node"))
      const ownerOf = (network: string, container: string) => `t:${network}:${attachmentKey(container, "eth0")}`
      const gcAdd = (network: string, container: string, ip: string, port: number, table: NftTable) =>
        nftElements.apply({ netns, table, owner: ownerOf(network, container), elements: elements(ip, port) })
      yield* gcAdd("net1", "keep", "10.0.0.2", 8080, TABLE)
      yield* gcAdd("net1", "stale", "10.0.0.3", 8081, TABLE)
      yield* gcAdd("net1", "stale2", "10.0.1.3", 8081, OTHER_SETTINGS)
      // another network's element is not this network's GC's to judge, even in this table
      yield* gcAdd("net9", "stale", "10.0.0.4", 8084, TABLE)
      yield* collectStaleNftElements(netns, keyedTablePrefix("t", "net1"), "t:net1", [{ containerID: "keep", ifname: "eth0" }])
      expect((yield* listed(netns)).map((e) => e.comment).sort()).toEqual(
        [ownerOf("net1", "keep"), ownerOf("net1", "keep"), ownerOf("net9", "stale"), ownerOf("net9", "stale")].sort()
      )
      // the table under the other settings was left empty: gone
      expect(yield* Backend.use((backend) => backend.listNftTables(netns, keyedTablePrefix("t", "net1")))).toEqual([{ family: "inet", name: TABLE.name }])
    }))
  })
})
