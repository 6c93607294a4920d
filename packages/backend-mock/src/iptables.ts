import {
  type BackendError,
  type IpFamily,
  IPTABLES_BUILTIN_CHAINS,
  IPTABLES_JUMP_COMMENT,
  type IptablesBatch,
  iptablesBatchProblem,
  iptablesCommentProblem,
  type IptablesListing,
  iptablesListing,
  isJumpInto,
  isTscniChain,
  iptablesTableProblem,
  type IptablesSelector,
  type IptablesTable,
  iptablesTarget,
  type NetnsPath
} from "@tscni/backend"
import { Effect } from "effect"
import { fail, type IptablesRuleState, type IptablesTableState, type KernelState, type NetnsState, requireNetns } from "./state.ts"

/**
 * Target extensions a rule may name without a chain of that name existing (the ones
 * tscni's plugins and their users write); any other `-j X` must be a chain of the table,
 * as iptables answers "Chain 'X' does not exist" otherwise.
 */
const TARGET_EXTENSIONS: ReadonlySet<string> = new Set([
  "ACCEPT", "DROP", "RETURN", "QUEUE", "NFQUEUE", "REJECT", "LOG", "MASQUERADE", "SNAT", "DNAT", "REDIRECT",
  "MARK", "CONNMARK", "CT", "NOTRACK", "TCPMSS", "TPROXY", "CHECKSUM", "NETMAP"
])

const tableKey = (family: IpFamily, table: IptablesTable): string => `${family} ${table}`


/** The table as it is, or as a first use creates it (built-in chains, empty). */
const tableOf = (ns: NetnsState, family: IpFamily, table: IptablesTable): IptablesTableState =>
  ns.iptables.get(tableKey(family, table)) ??
    { family, table, chains: new Map(IPTABLES_BUILTIN_CHAINS[table].map((chain) => [chain, []])) }


const copyTable = (state: IptablesTableState): IptablesTableState => ({
  family: state.family,
  table: state.table,
  chains: new Map([...state.chains].map(([name, rules]) => [name, [...rules]]))
})

/** tscni's view of one table of the model (iptablesListing). */
export const listingOf = (ns: NetnsState, family: IpFamily, table: IptablesTable): IptablesListing => {
  const state = ns.iptables.get(tableKey(family, table))
  if (state === undefined) return { chains: [], rules: [] }
  return iptablesListing(table, [...state.chains.keys()], (chain) => state.chains.get(chain) ?? [])
}

/** Every table of a namespace, for snapshots: `[family, table, listing]` in a stable order. */
export const iptablesTables = (ns: NetnsState): Array<readonly [IpFamily, IptablesTable, IptablesListing]> =>
  [...ns.iptables.keys()].sort().flatMap((key) => {
    const state = ns.iptables.get(key)
    return state === undefined ? [] : [[state.family, state.table, listingOf(ns, state.family, state.table)] as const]
  })

/**
 * iptables operations of the mock. A batch is validated and applied to a copy of the
 * table, which replaces the table only when every rule went in: all or nothing, like one
 * iptables-restore. Rule arguments are kept as given (iptables would print some of them
 * normalised); a jump to a chain that does not exist is NotFound, as with iptables.
 */
export const iptablesOperations = (state: KernelState) => ({
  addIptablesRules: (netns: NetnsPath, batch: IptablesBatch): Effect.Effect<void, BackendError> =>
    Effect.gen(function*() {
      const ns = yield* requireNetns(state, "addIptablesRules", netns)
      const problem = iptablesBatchProblem(batch)
      if (problem !== undefined) return yield* fail("addIptablesRules", "Invalid", `addIptablesRules: ${problem}`, "EINVAL")
      const next = copyTable(tableOf(ns, batch.family, batch.table))
      for (const chain of batch.chains) if (!next.chains.has(chain.name)) next.chains.set(chain.name, [])
      const inserted = new Map<string, Array<IptablesRuleState>>()
      for (const rule of batch.rules) {
        const target = iptablesTarget(rule.args)
        if (target !== undefined && !TARGET_EXTENSIONS.has(target) && !next.chains.has(target)) {
          return yield* fail("addIptablesRules", "NotFound", `addIptablesRules: Chain '${target}' does not exist`, "ENOENT")
        }
        const entry = { args: [...rule.args], comment: batch.comment }
        if (rule.position === "insert") inserted.set(rule.chain, [...(inserted.get(rule.chain) ?? []), entry])
        else next.chains.get(rule.chain)?.push(entry)
      }
      for (const [chain, rules] of inserted) next.chains.set(chain, [...rules, ...(next.chains.get(chain) ?? [])])
      for (const chain of batch.chains) {
        for (const jump of chain.jumpFrom ?? []) {
          const from = next.chains.get(jump.chain) ?? []
          if (from.some((rule) => isJumpInto(rule, chain.name))) continue
          const entry = { args: [...(jump.match ?? []), "-j", chain.name], comment: IPTABLES_JUMP_COMMENT }
          next.chains.set(jump.chain, jump.position === "insert" ? [entry, ...from] : [...from, entry])
        }
      }
      ns.iptables.set(tableKey(batch.family, batch.table), next)
    }),

  deleteIptablesRules: (netns: NetnsPath, selector: IptablesSelector): Effect.Effect<void, BackendError> =>
    Effect.gen(function*() {
      const ns = yield* requireNetns(state, "deleteIptablesRules", netns)
      const problem = iptablesCommentProblem(selector.comment) ?? iptablesTableProblem(selector.table)
      if (problem !== undefined) return yield* fail("deleteIptablesRules", "Invalid", `deleteIptablesRules: ${problem}`, "EINVAL")
      const current = ns.iptables.get(tableKey(selector.family, selector.table))
      if (current === undefined) return
      const next = copyTable(current)
      const emptied: Array<string> = []
      for (const [chain, rules] of next.chains) {
        if (!isTscniChain(chain)) continue
        const kept = rules.filter((rule) => rule.comment !== selector.comment)
        if (kept.length === rules.length) continue
        next.chains.set(chain, kept)
        if (kept.length === 0) emptied.push(chain)
      }
      for (const chain of emptied) {
        next.chains.delete(chain)
        for (const [name, rules] of next.chains) next.chains.set(name, rules.filter((rule) => !isJumpInto(rule, chain)))
      }
      ns.iptables.set(tableKey(selector.family, selector.table), next)
    }),

  listIptablesRules: (
    netns: NetnsPath,
    where: { readonly family: IpFamily; readonly table: IptablesTable }
  ): Effect.Effect<IptablesListing, BackendError> =>
    Effect.gen(function*() {
      const ns = yield* requireNetns(state, "listIptablesRules", netns)
      const unknown = iptablesTableProblem(where.table)
      if (unknown !== undefined) return yield* fail("listIptablesRules", "Invalid", `listIptablesRules: ${unknown}`, "EINVAL")
      return listingOf(ns, where.family, where.table)
    })
})
