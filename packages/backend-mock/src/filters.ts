import { type BackendError, type FilterRule, filterRuleProblem, type NetnsPath } from "@tscni/backend"
import { Effect } from "effect"
import { fail, type KernelState, requireNetns } from "./state.ts"

/**
 * Packet-filter operations of the mock. Rule bodies are opaque (the mock does not parse
 * nft syntax); a batch is validated as a whole and then appended, so it is all or nothing.
 * Identical rules may be added twice, as nft allows.
 */
export const filterOperations = (state: KernelState) => ({
  addFilterRules: (netns: NetnsPath, rules: ReadonlyArray<FilterRule>): Effect.Effect<void, BackendError> =>
    Effect.gen(function* () {
      const ns = yield* requireNetns(state, "addFilterRules", netns)
      for (const rule of rules) {
        const problem = filterRuleProblem(rule)
        if (problem !== undefined) return yield* fail("addFilterRules", "Invalid", `addFilterRules: ${problem}`, "EINVAL")
      }
      ns.filterRules = [...ns.filterRules, ...rules.map((r) => ({ ...r }))]
    }),

  deleteFilterRules: (netns: NetnsPath, table: string, comment: string): Effect.Effect<void, BackendError> =>
    Effect.map(requireNetns(state, "deleteFilterRules", netns), (ns) => {
      ns.filterRules = ns.filterRules.filter((r) => r.table !== table || r.comment !== comment)
    }),

  listFilterRules: (netns: NetnsPath, table?: string): Effect.Effect<ReadonlyArray<FilterRule>, BackendError> =>
    Effect.map(requireNetns(state, "listFilterRules", netns), (ns) =>
      ns.filterRules.filter((r) => table === undefined || r.table === table).map((r) => ({ ...r }))
    )
})
