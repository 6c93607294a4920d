import { describe, expect } from "bun:test"
import { Effect } from "effect"
import { Backend, type FilterRule } from "@tscni/backend"
import { addFilterRules } from "../src/index.ts"
import { stepContract } from "./harness.ts"

const rule = (address: string): FilterRule => ({
  family: "ip",
  table: "tscni",
  chain: "postrouting",
  rule: `ip saddr ${address} masquerade`,
  comment: "pod-1",
  baseChain: { type: "nat", hook: "postrouting", priority: 100 }
})

const prepare = Effect.gen(function*() {
  const netns = yield* Backend.use((backend) => backend.createNetns("pod1"))
  // another owner's rule in the same table must survive everything below
  yield* Backend.use((backend) => backend.addFilterRules(netns, [{ ...rule("10.0.0.9"), comment: "pod-2" }]))
  return { netns, rules: [rule("10.0.0.2"), rule("10.0.0.3")] }
})

describe("addFilterRules", () => {
  stepContract({
    step: addFilterRules,
    prepare,
    expectDiff: (handle, diff) => {
      expect(handle).toMatchObject({ table: "tscni", comment: "pod-1", count: 2 })
      expect(diff).toHaveLength(2)
    },
    observe: (handle) =>
      Effect.gen(function*() {
        const rules = yield* Backend.use((backend) => backend.listFilterRules(handle.netns, "tscni"))
        expect(rules.map((r) => r.comment).sort()).toEqual(["pod-1", "pod-1", "pod-2"])
      }),
    removeByHand: (handle) => Backend.use((backend) => backend.deleteFilterRules(handle.netns, "tscni", "pod-1")),
    breakByHand: (handle) =>
      Effect.gen(function*() {
        const backend = yield* Backend
        yield* backend.deleteFilterRules(handle.netns, "tscni", "pod-1")
        yield* backend.addFilterRules(handle.netns, [rule("10.0.0.2")])
      })
  })
})
