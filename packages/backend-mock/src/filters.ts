import { type BackendError, type FilterRule, filterRuleProblem, type NetnsPath, type NftTableRef } from "@tscni/backend"
import { Effect } from "effect"
import { fail, type KernelState, requireNetns } from "./state.ts"

const inTable = (rule: FilterRule, table: NftTableRef): boolean => rule.family === table.family && rule.table === table.name

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

  deleteFilterRules: (netns: NetnsPath, table: NftTableRef, comment: string): Effect.Effect<void, BackendError> =>
    Effect.map(requireNetns(state, "deleteFilterRules", netns), (ns) => {
      ns.filterRules = ns.filterRules.filter((r) => !inTable(r, table) || r.comment !== comment)
    }),

  listFilterRules: (netns: NetnsPath, table: NftTableRef): Effect.Effect<ReadonlyArray<FilterRule>, BackendError> =>
    Effect.map(requireNetns(state, "listFilterRules", netns), (ns) => ns.filterRules.filter((r) => inTable(r, table)).map((r) => ({ ...r })))
})
