/**
 * The element operations over nfnetlink (src/nfnetlink/), on the real kernel, checked
 * against nft itself: what the backend writes is what `nft -j` reads, what nft writes is
 * what the backend reads, byte layouts as nf_tables holds them, and a pod's element calls
 * cost the same whatever else the node holds. (The behaviour both backends share is in the
 * contract, packages/backend/src/contract.ts.)
 */
import { afterAll, describe, expect, test } from "bun:test"
import { Effect } from "effect"
import type { BackendShape, NftElement, NftTable } from "@tscni/backend"
import { closeNamespaceResources, makeLinuxBackend } from "../src/index.ts"
import { netfilterSocket } from "../src/netlink/socket.ts"
import { decodeData, encodeData, fieldsOfType, typeIdOf } from "../src/nfnetlink/nftTypes.ts"
import { namespacesWithContexts } from "../src/nftables.ts"

const hex = (bytes: Uint8Array): string => Buffer.from(bytes).toString("hex")

describe("key and value bytes as nf_tables holds them", () => {
  const fields = (type: string) => fieldsOfType(typeIdOf(type)!)!

  test("type ids: nft's datatype numbers, a concatenation packed 6 bits per field, the first field highest", () => {
    expect(typeIdOf("ipv4_addr")).toBe(7)
    expect(typeIdOf("ipv4_addr . ipv4_addr")).toBe((7 << 6) | 7)
    expect(typeIdOf("inet_proto . inet_service")).toBe((12 << 6) | 13)
    expect(typeIdOf("ifname . ether_addr")).toBe((41 << 6) | 9)
    expect(typeIdOf("ipv6_addr . inet_proto . inet_service")).toBe((8 << 12) | (12 << 6) | 13)
    expect(fields("ipv4_addr . inet_proto . inet_service").map((field) => field.name)).toEqual(["ipv4_addr", "inet_proto", "inet_service"])
    expect(fieldsOfType(4)).toBeUndefined() // integer: not a type of tscni's sets
    expect(typeIdOf("ipv4_address")).toBeUndefined()
  })

  test("each field of a concatenation padded to 4 bytes; a lone field its own size", () => {
    const layout = (type: string, text: string, interval = false) => {
      const data = encodeData(fields(type), text, interval)!
      return [hex(data.start), hex(data.end)]
    }
    expect(layout("inet_proto . inet_service", "tcp . 8080")).toEqual(["060000001f900000", "060000001f900000"])
    expect(layout("inet_service", "8080")).toEqual(["1f90", "1f90"])
    expect(layout("ipv4_addr . inet_service", "10.0.0.2 . 80")).toEqual(["0a00000200500000", "0a00000200500000"])
    expect(layout("ifname . ether_addr", '"veth1" . 0a:58:0a:63:09:02')[0]).toBe(`${hex(new TextEncoder().encode("veth1"))}${"00".repeat(11)}0a580a6309020000`)
    expect(layout("ifname", '"eth0"')[0]).toBe(`65746830${"00".repeat(12)}`)
    expect(layout("mark", "0x00004000")[0]).toBe("00400000") // host byte order
    expect(layout("ipv6_addr", "fd00::1")[0]).toBe(`fd00${"00".repeat(13)}01`)
  })

  test("an interval concatenation: a prefix is its first and last address, a single value both", () => {
    const own4 = fields("ipv4_addr . ipv4_addr")
    const data = encodeData(own4, "10.0.0.2 . 10.0.0.0/24", true)!
    expect([hex(data.start), hex(data.end)]).toEqual(["0a0000020a000000", "0a0000020a0000ff"])
    expect(decodeData(own4, data.start, data.end)).toBe("10.0.0.2 . 10.0.0.0/24")
    const single = encodeData(own4, "10.0.0.3 . 10.0.0.3", true)!
    expect(hex(single.end)).toBe(hex(single.start))
    expect(decodeData(own4, single.start, single.end)).toBe("10.0.0.3 . 10.0.0.3")
    // a range that is no network prints as nft prints it
    const range = encodeData(fields("ipv4_addr . inet_service"), "10.0.0.1-10.0.0.5 . 80-90", true)!
    expect(decodeData(fields("ipv4_addr . inet_service"), range.start, range.end)).toBe("10.0.0.1-10.0.0.5 . 80-90")
    const six = encodeData(fields("ipv6_addr . ipv6_addr"), "fd00::2 . fd00::/64", true)!
    expect(hex(six.end).slice(32)).toBe(`fd00${"00".repeat(6)}${"ff".repeat(8)}`)
    expect(decodeData(fields("ipv6_addr . ipv6_addr"), six.start, six.end)).toBe("fd00::2 . fd00::/64")
  })

  test("what is not a value of the type, or a prefix or range outside an interval set, has no bytes", () => {
    const own4 = fields("ipv4_addr . ipv4_addr")
    for (const text of ["10.0.0.2 . 10.0.0.1/24", "10.0.0.2 . 10.0.0.0/32", "10.0.0.02 . 10.0.0.0/24", "10.0.0.2", "10.0.0.2 . 10.0.0.0/24 . 1"]) {
      expect(encodeData(own4, text, true)).toBeUndefined()
    }
    expect(encodeData(own4, "10.0.0.2 . 10.0.0.0/24", false)).toBeUndefined()
    const port = fields("inet_proto . inet_service")
    for (const text of ["TCP . 80", "tcp . 65536", "tcp . 080", "tcp . 80-90"]) expect(encodeData(port, text, false)).toBeUndefined()
    expect(encodeData(fields("ifname"), '"a-name-longer-than-15"', false)).toBeUndefined()
    expect(encodeData(fields("ether_addr"), "0A:58:0A:63:09:02", false)).toBeUndefined()
  })
})

if (process.getuid?.() !== 0) throw new Error("these tests need root")

const backend: BackendShape = makeLinuxBackend()
const run = <A, E>(effect: Effect.Effect<A, E>): Promise<A> => Effect.runPromise(effect)

const made: Array<{ name: string; path: string }> = []
const fresh = async (): Promise<{ name: string; path: string }> => {
  const name = `tscni-ne-${process.pid}-${made.length}`
  const ns = { name, path: await run(backend.createNetns(name)) }
  made.push(ns)
  return ns
}
afterAll(() => {
  for (const { name, path } of made) {
    closeNamespaceResources(path)
    Bun.spawnSync(["ip", "netns", "delete", name])
  }
})

const nft = (netns: string, args: ReadonlyArray<string>, stdin?: string): string => {
  const out = Bun.spawnSync(["ip", "netns", "exec", netns, "nft", ...args], { stdin: stdin === undefined ? "ignore" : new TextEncoder().encode(stdin), stdout: "pipe", stderr: "pipe" })
  if (out.exitCode !== 0) throw new Error(`nft ${args.join(" ")}: ${out.stderr.toString()}`)
  return out.stdout.toString()
}

type Json = any
/** One field as `nft -j` shows it, in nft's text spelling. */
const fieldText = (type: string, value: Json): string => {
  if (typeof value === "object" && value !== null && "prefix" in value) return `${value.prefix.addr}/${value.prefix.len}`
  if (typeof value === "object" && value !== null && "range" in value) return `${fieldText(type, value.range[0])}-${fieldText(type, value.range[1])}`
  if (type === "ifname") return `"${value}"`
  if (type === "mark") return `0x${Number(value).toString(16).padStart(8, "0")}`
  return String(value)
}
const dataText = (types: ReadonlyArray<string>, value: Json): string =>
  typeof value === "object" && value !== null && "concat" in value ? value.concat.map((part: Json, i: number) => fieldText(types[i]!, part)).join(" . ") : fieldText(types[0]!, value)
const verdictText = (value: Json): string => {
  const [name, argument] = Object.entries(value)[0]!
  return argument !== null && typeof argument === "object" ? `${name} ${(argument as Json).target}` : name
}

/** Every element of a table as `nft -j list table` shows it. */
const nftElements = (netns: string, table: NftTable): Array<NftElement> => {
  const listing = JSON.parse(nft(netns, ["-j", "list", "table", table.family, table.name])).nftables as Array<Json>
  const elements: Array<NftElement> = []
  for (const entry of listing) {
    const set = entry.set ?? entry.map
    if (set === undefined) continue
    const keyTypes: Array<string> = typeof set.type === "string" ? [set.type] : set.type
    for (const item of set.elem ?? []) {
      const [key, value] = entry.map === undefined ? [item, undefined] : item
      const inner = typeof key === "object" && key !== null && "elem" in key ? key.elem : { val: key }
      elements.push({
        set: set.name,
        key: dataText(keyTypes, inner.val),
        ...(value === undefined ? {} : { value: set.map === "verdict" ? verdictText(value) : dataText(set.map.split(" . "), value) }),
        comment: inner.comment ?? ""
      })
    }
  }
  return elements
}

const sorted = (elements: ReadonlyArray<NftElement>) => [...elements].sort((x, y) => `${x.set} ${x.key}`.localeCompare(`${y.set} ${y.key}`))
const keysOf = (elements: ReadonlyArray<NftElement>) => elements.map(({ set, key }) => ({ set, key }))

const TABLE: NftTable = {
  family: "inet",
  name: "tscni-ne-k",
  sets: [
    { name: "pods4", type: "ipv4_addr" },
    { name: "own4", type: "ipv4_addr . ipv4_addr", interval: true },
    { name: "own6", type: "ipv6_addr . ipv6_addr", interval: true },
    { name: "hostdnat4", type: "ipv4_addr . inet_proto . inet_service", map: "ipv4_addr . inet_service" },
    { name: "dnat6", type: "inet_proto . inet_service", map: "ipv6_addr . inet_service" },
    { name: "allowed", type: "ifname . ether_addr" },
    { name: "marks", type: "mark" },
    { name: "verdicts", type: "ipv4_addr", map: "verdict" }
  ],
  chains: [{ name: "target", rules: [] }]
}
const ELEMENTS: ReadonlyArray<NftElement> = [
  { set: "pods4", key: "10.99.9.2", comment: "ne-owner-1" },
  { set: "own4", key: "10.99.9.2 . 10.99.9.0/24", comment: "ne-owner-1" },
  { set: "own4", key: "10.99.9.3 . 10.99.9.3", comment: "ne-owner-2" },
  { set: "own6", key: "fd00:99::2 . fd00:99::/64", comment: "ne-owner-1" },
  { set: "hostdnat4", key: "192.0.2.1 . tcp . 8080", value: "10.99.9.2 . 80", comment: "ne-owner-1" },
  { set: "dnat6", key: "udp . 53", value: "fd00:99::2 . 5353", comment: "ne-owner-2" },
  { set: "allowed", key: '"ne-veth1" . 0a:58:0a:63:09:02', comment: "ne-owner-1" },
  { set: "marks", key: "0x00004000", comment: "ne-owner-1" },
  { set: "verdicts", key: "10.99.9.2", value: "jump target", comment: "ne-owner-2" }
]

/**
 * A table's sets and empty chains made by nft itself, so that nothing of the backend's own
 * opens libnftables in the namespace: what the tests then do goes over nfnetlink, or the
 * namespace has an nft context afterwards.
 */
const createByNft = (netns: string, table: NftTable): void => {
  const sets = table.sets.map((set) =>
    `  ${set.map === undefined ? "set" : "map"} ${set.name} { type ${set.type}${set.map === undefined ? "" : ` : ${set.map}`} ;${set.interval === true ? " flags interval ;" : ""} }`
  )
  const chains = table.chains.map((chain) => `  chain ${chain.name} { }`)
  nft(netns, ["-f", "-"], `table ${table.family} ${table.name} {\n${[...sets, ...chains].join("\n")}\n}\n`)
}

const elementLines = (table: NftTable, elements: ReadonlyArray<NftElement>): string =>
  elements.map((element) =>
    `add element ${table.family} ${table.name} ${element.set} { ${element.key} comment "${element.comment}"${element.value === undefined ? "" : ` : ${element.value}`} }\n`
  ).join("")

describe("elements over nfnetlink, seen by nft", () => {
  test("what the backend adds is what nft -j lists; what it deletes is gone", async () => {
    const ns = await fresh()
    createByNft(ns.name, TABLE)
    await run(backend.addNftElements(ns.path, TABLE, ELEMENTS))
    expect(sorted(nftElements(ns.name, TABLE))).toEqual(sorted(ELEMENTS))
    const gone = ELEMENTS.filter((element) => element.comment === "ne-owner-2")
    await run(backend.deleteNftElements(ns.path, TABLE, keysOf(gone)))
    expect(sorted(nftElements(ns.name, TABLE))).toEqual(sorted(ELEMENTS.filter((element) => element.comment !== "ne-owner-2")))
    // every set type of the table was written over nfnetlink, none left to libnftables
    expect(namespacesWithContexts()).not.toContain(ns.path)
  })

  test("what nft adds is what the backend lists and gets, keys spelled as nft prints them", async () => {
    const ns = await fresh()
    createByNft(ns.name, TABLE)
    nft(ns.name, ["-f", "-"], elementLines(TABLE, ELEMENTS))
    expect(sorted(await run(backend.listNftElements(ns.path, TABLE)))).toEqual(sorted(ELEMENTS))
    expect(sorted(await run(backend.getNftElements(ns.path, TABLE, keysOf(ELEMENTS))))).toEqual(sorted(ELEMENTS))
    expect(namespacesWithContexts()).not.toContain(ns.path)
  })

  test("a set of single-field intervals is left to libnftables, and reads as nft prints it", async () => {
    const ns = await fresh()
    const nets: NftTable = { family: "inet", name: "tscni-ne-i", sets: [{ name: "nets4", type: "ipv4_addr", interval: true }, { name: "pods4", type: "ipv4_addr" }], chains: [] }
    createByNft(ns.name, nets)
    const elements: ReadonlyArray<NftElement> = [
      { set: "nets4", key: "10.98.0.0/16", comment: "ne-owner-1" },
      { set: "nets4", key: "10.97.0.1", comment: "ne-owner-2" },
      { set: "pods4", key: "10.96.0.1", comment: "ne-owner-2" }
    ]
    await run(backend.addNftElements(ns.path, nets, elements))
    expect(namespacesWithContexts()).toContain(ns.path)
    expect(sorted(nftElements(ns.name, nets))).toEqual(sorted(elements))
    expect(sorted(await run(backend.listNftElements(ns.path, nets)))).toEqual(sorted(elements))
    // the element with exactly that key, its comment included (nft's own `get element` answers 10.98.1.0/24 with 10.98.0.0/16, and drops the comment)
    expect(await run(backend.getNftElements(ns.path, nets, [{ set: "nets4", key: "10.98.0.0/16" }, { set: "nets4", key: "10.98.1.0/24" }]))).toEqual([elements[0]!])
    await run(backend.deleteNftElements(ns.path, nets, keysOf(elements)))
    expect(nftElements(ns.name, nets)).toEqual([])
  })

  test("a refused batch names the element the kernel refused", async () => {
    const ns = await fresh()
    await run(backend.createNftTable(ns.path, TABLE, [ELEMENTS[4]!]))
    const failure = await run(Effect.flip(backend.addNftElements(ns.path, TABLE, [ELEMENTS[0]!, { ...ELEMENTS[4]!, comment: "ne-owner-3" }])))
    expect(failure).toMatchObject({ reason: "AlreadyExists", errno: "EEXIST", operation: "addNftElements" })
    expect(failure.message).toContain(`inet ${TABLE.name} set hostdnat4 { 192.0.2.1 . tcp . 8080 }`)
    const missing = await run(Effect.flip(backend.deleteNftElements(ns.path, TABLE, [{ set: "pods4", key: "10.99.9.9" }])))
    expect(missing).toMatchObject({ reason: "NotFound", errno: "ENOENT" })
    expect(missing.message).toContain("set pods4 { 10.99.9.9 }")
  })

  test("a table made again by someone else under the same name, with other types: the backend reads the new definition", async () => {
    const ns = await fresh()
    const before: NftTable = { family: "inet", name: "tscni-ne-r", sets: [{ name: "s", type: "ipv4_addr" }], chains: [] }
    const after: NftTable = { ...before, sets: [{ name: "s", type: "ipv6_addr" }] }
    await run(backend.createNftTable(ns.path, before, [{ set: "s", key: "10.99.9.2", comment: "ne-owner-1" }]))
    expect(await run(backend.getNftElements(ns.path, before, [{ set: "s", key: "10.99.9.2" }]))).toHaveLength(1)
    // behind the backend's back: its cached definition of `s` is stale now
    nft(ns.name, ["-f", "-"], `delete table inet tscni-ne-r\ntable inet tscni-ne-r {\n  set s { type ipv6_addr ; }\n}\n`)
    await run(backend.addNftElements(ns.path, after, [{ set: "s", key: "fd00:99::2", comment: "ne-owner-1" }]))
    expect(await run(backend.getNftElements(ns.path, after, [{ set: "s", key: "fd00:99::2" }]))).toEqual([{ set: "s", key: "fd00:99::2", comment: "ne-owner-1" }])
    expect(nftElements(ns.name, after)).toEqual([{ set: "s", key: "fd00:99::2", comment: "ne-owner-1" }])
    // an IPv4 key is no key of it
    expect(await run(Effect.flip(backend.getNftElements(ns.path, after, [{ set: "s", key: "10.99.9.2" }])))).toMatchObject({ reason: "Invalid" })
  })
})

/** A kube-proxy-like table: `rules` rules, half of them in as many chains of their own. */
const foreignRules = (rules: number): string => {
  const services = rules / 2
  const ip = (base: string, i: number) => `${base}.${Math.floor(i / 250)}.${(i % 250) + 1}`
  const lines = ["table ip ne-foreign {"]
  for (let i = 0; i < services; i++) lines.push(`  chain service-${i} { meta l4proto tcp dnat to ${ip("10.250", i)}:8080; }`)
  lines.push("  chain services {")
  for (let i = 0; i < services; i++) lines.push(`    ip daddr ${ip("172.30", i)} tcp dport 80 jump service-${i}`)
  lines.push("  }", "}")
  return lines.join("\n") + "\n"
}

describe("a pod's element calls cost the same whatever the node holds", () => {
  const HOSTPORTS: NftTable = {
    family: "inet",
    name: "tscni-ne-pm",
    sets: [
      { name: "dnat4", type: "inet_proto . inet_service", map: "ipv4_addr . inet_service" },
      { name: "hairpin4", type: "ipv4_addr . ipv4_addr . inet_proto . inet_service" },
      { name: "local4", type: "ipv4_addr . inet_proto . inet_service" },
      { name: "own4", type: "ipv4_addr . ipv4_addr", interval: true }
    ],
    chains: []
  }
  const pod = (i: number): Array<NftElement> => {
    const ip = `10.96.${i >> 8}.${i & 255}`
    const owner = `ne-owner-${i}`
    return [
      { set: "dnat4", key: `tcp . ${20000 + i}`, value: `${ip} . 80`, comment: owner },
      { set: "hairpin4", key: `${ip} . ${ip} . tcp . 80`, comment: owner },
      { set: "local4", key: `${ip} . tcp . 80`, comment: owner },
      { set: "own4", key: `${ip} . 10.96.0.0/16`, comment: owner }
    ]
  }

  test("bytes received per add, get and delete: the same with 5,000 foreign rules and 2,250 other elements", async () => {
    const ns = await fresh()
    createByNft(ns.name, HOSTPORTS)
    const probe = pod(1000)
    const cost = async (): Promise<Array<number>> => {
      const socket = netfilterSocket(ns.path)
      const bytes: Array<number> = []
      const measure = async (call: Effect.Effect<unknown, unknown>) => {
        const before = socket.bytesReceived
        await run(call)
        bytes.push(socket.bytesReceived - before)
      }
      await measure(backend.addNftElements(ns.path, HOSTPORTS, probe))
      await measure(backend.getNftElements(ns.path, HOSTPORTS, keysOf(probe)))
      await measure(backend.deleteNftElements(ns.path, HOSTPORTS, keysOf(probe)))
      return bytes
    }
    await cost() // the sets' definitions, once per process
    const empty = await cost()
    nft(ns.name, ["-f", "-"], foreignRules(5000))
    const others = Array.from({ length: 750 }, (_, i) => pod(i).slice(0, 3)).flat()
    nft(ns.name, ["-f", "-"], elementLines(HOSTPORTS, others))
    expect(nft(ns.name, ["list", "table", "ip", "ne-foreign"]).match(/dnat to|jump service-/g)).toHaveLength(5000)
    expect((await run(backend.listNftElements(ns.path, HOSTPORTS))).length).toBe(2250)
    const busy = await cost()
    expect(empty.every((bytes) => bytes > 0)).toBe(true)
    expect(busy).toEqual(empty)
    // and none of it went through libnftables
    expect(namespacesWithContexts()).not.toContain(ns.path)
  }, 60_000)
})
