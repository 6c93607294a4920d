import { type BackendError, FILTER_FAMILIES, type FilterRule, type NetnsPath } from "@tscni/backend"
import { Effect } from "effect"
import { fail, type KernelState, requireNetns } from "./state.ts"

const IP_HOOKS: ReadonlySet<string> = new Set(["prerouting", "input", "forward", "output", "postrouting"])

/**
 * Why nft would refuse the rule's base chain, or undefined: `bridge` and `netdev` chains
 * are `type filter` only; `netdev` hooks are ingress/egress on a device; the IP families
 * (and bridge) use the five IP hooks (inet may also hook a device's ingress). The device
 * need not exist yet: recent kernels (6.18 here) accept a hook on a missing device.
 */
const baseChainProblem = (rule: FilterRule): string | undefined => {
  const base = rule.baseChain
  if (base === undefined) return undefined
  if ((rule.family === "bridge" || rule.family === "netdev") && base.type !== "filter") {
    return `a ${rule.family} chain can only be of type filter`
  }
  if (rule.family === "netdev") {
    if (base.hook !== "ingress" && base.hook !== "egress") return `a netdev chain hooks ingress or egress, not ${base.hook}`
    if (base.device === undefined) return "a netdev base chain needs a device"
    return undefined
  }
  if (rule.family === "inet" && base.hook === "ingress") {
    return base.device === undefined ? "an inet ingress chain needs a device" : undefined
  }
  if (!IP_HOOKS.has(base.hook)) return `a ${rule.family} chain cannot hook ${base.hook}`
  if (base.device !== undefined) return `a ${rule.family} ${base.hook} chain takes no device`
  return undefined
}

/**
 * Packet-filter operations of the mock. Rule bodies are opaque (the mock does not parse
 * nft syntax); a batch is validated as a whole and then appended, so it is all or nothing.
 * Identical rules may be added twice, as nft allows.
 */
export const filterOperations = (state: KernelState) => ({
  addFilterRules: (netns: NetnsPath, rules: ReadonlyArray<FilterRule>): Effect.Effect<void, BackendError> =>
    Effect.gen(function* () {
      const ns = yield* requireNetns(state, "addFilterRules", netns)
      const bad = rules.find(
        (r) =>
          !FILTER_FAMILIES.has(r.family) ||
          r.table.trim() === "" ||
          r.chain.trim() === "" ||
          r.rule.trim() === "" ||
          r.comment.trim() === ""
      )
      if (bad !== undefined) {
        return yield* fail("addFilterRules", "Invalid", `invalid rule ${JSON.stringify(bad)}`, "EINVAL")
      }
      for (const rule of rules) {
        const problem = baseChainProblem(rule)
        if (problem !== undefined) return yield* fail("addFilterRules", "Invalid", problem, "EINVAL")
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
