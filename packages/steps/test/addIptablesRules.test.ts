import { describe, expect } from "bun:test"
import { Effect } from "effect"
import { Backend, type IptablesBatch } from "@tscni/backend"
import { addIptablesRules } from "../src/index.ts"
import { stepContract } from "./harness.ts"

const nat = { family: 4, table: "nat" } as const
const batch = (comment: string, address: string): IptablesBatch => ({
  ...nat,
  chains: [{ name: "TSCNI-TEST", jumpFrom: [{ chain: "POSTROUTING", position: "append" }] }],
  rules: [
    { chain: "TSCNI-TEST", args: ["-s", `${address}/32`, "-d", "10.0.0.0/24", "-j", "RETURN"] },
    { chain: "TSCNI-TEST", args: ["-s", `${address}/32`, "-j", "MASQUERADE"] }
  ],
  comment
})

const prepare = Effect.gen(function*() {
  const netns = yield* Backend.use((backend) => backend.createNetns("pod1"))
  // another owner's rule in the same chain must survive everything below
  yield* Backend.use((backend) => backend.addIptablesRules(netns, batch("pod-2", "10.0.0.9")))
  return { netns, batch: batch("pod-1", "10.0.0.2") }
})

describe("addIptablesRules", () => {
  stepContract({
    step: addIptablesRules,
    prepare,
    expectDiff: (handle, diff) => {
      expect(handle).toMatchObject({ family: 4, table: "nat", comment: "pod-1", count: 2, chains: [{ name: "TSCNI-TEST", jumpFrom: ["POSTROUTING"] }] })
      expect(diff).toHaveLength(2)
    },
    observe: (handle) =>
      Effect.gen(function*() {
        const listing = yield* Backend.use((backend) => backend.listIptablesRules(handle.netns, nat))
        expect(listing.rules.map((r) => r.comment)).toEqual(["tscni", "pod-2", "pod-2", "pod-1", "pod-1"])
      }),
    removeByHand: (handle) => Backend.use((backend) => backend.deleteIptablesRules(handle.netns, { ...nat, comment: "pod-1" })),
    breakByHand: (handle) =>
      Effect.gen(function*() {
        const backend = yield* Backend
        yield* backend.deleteIptablesRules(handle.netns, { ...nat, comment: "pod-1" })
        yield* backend.addIptablesRules(handle.netns, { ...batch("pod-1", "10.0.0.2"), rules: [batch("pod-1", "10.0.0.2").rules[1]!] })
      })
  })
})
