import { describe, expect, test } from "bun:test"
import { Effect } from "effect"
import { Backend, type IptablesPodBatch } from "@tscni/backend"
import { iptablesPodChains, iptablesPodChainsHandles } from "../src/index.ts"
import { control, onKernel, stepContract } from "./harness.ts"

const nat = { family: 4, table: "nat" } as const
const ENTRY = { name: "TSCNI-TEST", jumpFrom: [{ chain: "POSTROUTING" as const, position: "append" as const }] }
const batch = (comment: string, key: string, address: string): IptablesPodBatch => ({
  ...nat,
  comment,
  chains: [{
    name: `TSCNI-T-${key}`,
    entry: ENTRY,
    rules: [["-s", `${address}/32`, "-d", "10.0.0.0/24", "-j", "RETURN"], ["-s", `${address}/32`, "-j", "MASQUERADE"]]
  }]
})

const prepare = Effect.gen(function*() {
  const netns = yield* Backend.use((backend) => backend.createNetns("pod1"))
  // another owner's chain behind the same shared chain must survive everything below
  yield* Backend.use((backend) => backend.addIptablesPodChains(netns, batch("pod-2", "B", "10.0.0.9")))
  return { netns, batch: batch("pod-1", "A", "10.0.0.2") }
})

describe("iptablesPodChains", () => {
  describe("the first pod: the shared chain is made, and goes again with a rollback", () => {
    stepContract({
      step: iptablesPodChains,
      prepare: Effect.map(Backend.use((backend) => backend.createNetns("pod1")), (netns) => ({ netns, batch: batch("pod-1", "A", "10.0.0.2") })),
      expectDiff: (handle, diff) => {
        expect(handle.createdEntries).toEqual([ENTRY])
        expect(diff).toContain(`${handle.netns}: + iptables chain 4 nat TSCNI-TEST`)
        expect(diff).toContain(`${handle.netns}: + iptables rule 4 nat POSTROUTING "-j TSCNI-TEST" comment "tscni"`)
        expect(diff).toHaveLength(6)
      },
      observe: (handle) =>
        Effect.map(Backend.use((backend) => backend.listIptablesChains(handle.netns, { ...nat, chains: ["TSCNI-TEST", "TSCNI-T-A"] })), (listing) =>
          expect(listing.chains).toEqual(["TSCNI-T-A", "TSCNI-TEST"])),
      removeByHand: (handle) =>
        Effect.gen(function*() {
          const backend = yield* Backend
          yield* backend.deleteIptablesPodChains(handle.netns, { ...nat, comment: "pod-1", chains: [{ name: "TSCNI-T-A", entry: "TSCNI-TEST" }] })
          expect(yield* backend.deleteIptablesChainIfEmpty(handle.netns, { ...nat, chain: ENTRY })).toBe(true)
        }),
      breakByHand: (handle) =>
        Backend.use((backend) => backend.deleteIptablesPodChains(handle.netns, { ...nat, comment: "pod-1", chains: [{ name: "TSCNI-T-A", entry: "TSCNI-TEST" }] }))
    })
  })

  test("a rollback keeps the shared chain it made when another pod uses it by then", () => {
    onKernel(Effect.gen(function*() {
      const netns = yield* Backend.use((backend) => backend.createNetns("pod1"))
      const first = yield* iptablesPodChains.apply({ netns, batch: batch("pod-1", "A", "10.0.0.2") })
      yield* iptablesPodChains.apply({ netns, batch: batch("pod-2", "B", "10.0.0.3") })
      yield* iptablesPodChains.undo(first)
      const listing = yield* Backend.use((backend) => backend.listIptablesChains(netns, { ...nat, chains: ["TSCNI-TEST"] }))
      expect(listing.rules.map((r) => r.args.join(" "))).toEqual(["-j TSCNI-T-B"])
    }))
  })

  stepContract({
    step: iptablesPodChains,
    prepare,
    expectDiff: (handle, diff) => {
      expect(handle).toEqual({ netns: handle.netns, family: 4, table: "nat", comment: "pod-1", chains: [{ name: "TSCNI-T-A", entry: "TSCNI-TEST", rules: 2 }], createdEntries: [] })
      expect(diff).toEqual([
        `${handle.netns}: + iptables chain 4 nat TSCNI-T-A`,
        `${handle.netns}: + iptables rule 4 nat TSCNI-T-A "-s 10.0.0.2/32 -d 10.0.0.0/24 -j RETURN" comment ""`,
        `${handle.netns}: + iptables rule 4 nat TSCNI-T-A "-s 10.0.0.2/32 -j MASQUERADE" comment ""`,
        `${handle.netns}: + iptables rule 4 nat TSCNI-TEST "-j TSCNI-T-A" comment "pod-1"`
      ])
    },
    observe: (handle) =>
      Effect.gen(function*() {
        const listing = yield* Backend.use((backend) => backend.listIptablesChains(handle.netns, { ...nat, chains: ["TSCNI-TEST"] }))
        expect(listing.rules.map((r) => [r.args.join(" "), r.comment])).toEqual([["-j TSCNI-T-B", "pod-2"], ["-j TSCNI-T-A", "pod-1"]])
      }),
    removeByHand: (handle) =>
      Backend.use((backend) => backend.deleteIptablesPodChains(handle.netns, { ...nat, comment: "pod-1", chains: [{ name: "TSCNI-T-A", entry: "TSCNI-TEST" }] })),
    breakByHand: (handle) =>
      Effect.gen(function*() {
        const backend = yield* Backend
        yield* backend.deleteIptablesPodChains(handle.netns, { ...nat, comment: "pod-1", chains: [{ name: "TSCNI-T-A", entry: "TSCNI-TEST" }] })
        const one = batch("pod-1", "A", "10.0.0.2")
        yield* backend.addIptablesPodChains(handle.netns, { ...one, chains: [{ ...one.chains[0]!, rules: [one.chains[0]!.rules[1]!] }] })
      })
  })

  test("a chain a killed ADD left is replaced; DEL's handles cover both families", () => {
    onKernel(Effect.gen(function*() {
      const mock = yield* control
      const { netns, batch: mine } = yield* prepare
      const before = mock.snapshot()
      yield* Backend.use((backend) => backend.addIptablesPodChains(netns, { ...mine, chains: [{ ...mine.chains[0]!, rules: [["-j", "RETURN"]] }] }))
      const handle = yield* iptablesPodChains.apply({ netns, batch: mine })
      yield* iptablesPodChains.check(handle)
      for (const del of iptablesPodChainsHandles(netns, "nat", "pod-1", [{ name: "TSCNI-T-A", entry: "TSCNI-TEST" }])) yield* iptablesPodChains.undo(del)
      expect(mock.diff(before, mock.snapshot())).toEqual([])
    }))
  })
})
