import {
  type BackendError,
  type IpFamily,
  IPTABLES_BUILTIN_CHAINS,
  IPTABLES_JUMP_COMMENT,
  type IptablesBatch,
  iptablesBatchProblem,
  type IptablesChain,
  type IptablesPodBatch,
  iptablesPodBatchProblem,
  type IptablesPodSelector,
  iptablesPodSelectorProblem,
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

  addIptablesPodChains: (netns: NetnsPath, batch: IptablesPodBatch): Effect.Effect<ReadonlyArray<string>, BackendError> =>
    Effect.gen(function*() {
      const ns = yield* requireNetns(state, "addIptablesPodChains", netns)
      const problem = iptablesPodBatchProblem(batch)
      if (problem !== undefined) return yield* fail("addIptablesPodChains", "Invalid", `addIptablesPodChains: ${problem}`, "EINVAL")
      const next = copyTable(tableOf(ns, batch.family, batch.table))
      const existing = batch.chains.find((chain) => next.chains.has(chain.name))
      if (existing !== undefined) {
        return yield* fail("addIptablesPodChains", "AlreadyExists", `addIptablesPodChains: Chain already exists (${existing.name})`, "EEXIST")
      }
      const created: Array<string> = []
      for (const chain of batch.chains) {
        // the shared chain and its hooks, as the first pod's setup transaction makes them
        if (!next.chains.has(chain.entry.name)) {
          created.push(chain.entry.name)
          next.chains.set(chain.entry.name, [])
          for (const jump of chain.entry.jumpFrom ?? []) {
            const from = next.chains.get(jump.chain) ?? []
            const entry = { args: [...(jump.match ?? []), "-j", chain.entry.name], comment: IPTABLES_JUMP_COMMENT }
            next.chains.set(jump.chain, jump.position === "insert" ? [entry, ...from] : [...from, entry])
          }
        }
        next.chains.set(chain.name, chain.rules.map((args) => ({ args: [...args], comment: "" })))
      }
      for (const chain of batch.chains) {
        const target = chain.rules.map(iptablesTarget).find((t) => t !== undefined && !TARGET_EXTENSIONS.has(t) && !next.chains.has(t))
        if (target !== undefined) return yield* fail("addIptablesPodChains", "NotFound", `addIptablesPodChains: Chain '${target}' does not exist`, "ENOENT")
        const jump = { args: ["-j", chain.name], comment: batch.comment }
        const from = next.chains.get(chain.entry.name) ?? []
        next.chains.set(chain.entry.name, chain.position === "insert" ? [jump, ...from] : [...from, jump])
      }
      ns.iptables.set(tableKey(batch.family, batch.table), next)
      return created
    }),

  deleteIptablesChainIfEmpty: (
    netns: NetnsPath,
    where: { readonly family: IpFamily; readonly table: IptablesTable; readonly chain: IptablesChain }
  ): Effect.Effect<boolean, BackendError> =>
    Effect.gen(function*() {
      const ns = yield* requireNetns(state, "deleteIptablesChainIfEmpty", netns)
      const problem = iptablesTableProblem(where.table) ?? (isTscniChain(where.chain.name) ? undefined : `bad chain name '${where.chain.name}'`)
      if (problem !== undefined) return yield* fail("deleteIptablesChainIfEmpty", "Invalid", `deleteIptablesChainIfEmpty: ${problem}`, "EINVAL")
      const current = ns.iptables.get(tableKey(where.family, where.table))
      const rules = current?.chains.get(where.chain.name)
      if (current === undefined || rules === undefined || rules.length > 0) return false
      const next = copyTable(current)
      const hooks = (where.chain.jumpFrom ?? []).map((jump) => ({ from: jump.chain, args: [...(jump.match ?? []), "-j", where.chain.name].join(" ") }))
      // every hook must be there to be deleted (one restore: all or nothing), and no other jump may remain
      for (const hook of hooks) {
        const from = next.chains.get(hook.from) ?? []
        const at = from.findIndex((rule) => rule.comment === IPTABLES_JUMP_COMMENT && rule.args.join(" ") === hook.args)
        if (at < 0) return false
        next.chains.set(hook.from, from.filter((_, i) => i !== at))
      }
      if ([...next.chains.values()].some((chainRules) => chainRules.some((rule) => iptablesTarget(rule.args) === where.chain.name))) return false
      next.chains.delete(where.chain.name)
      ns.iptables.set(tableKey(where.family, where.table), next)
      return true
    }),

  deleteIptablesPodChains: (netns: NetnsPath, selector: IptablesPodSelector): Effect.Effect<void, BackendError> =>
    Effect.gen(function*() {
      const ns = yield* requireNetns(state, "deleteIptablesPodChains", netns)
      const problem = iptablesPodSelectorProblem(selector)
      if (problem !== undefined) return yield* fail("deleteIptablesPodChains", "Invalid", `deleteIptablesPodChains: ${problem}`, "EINVAL")
      const current = ns.iptables.get(tableKey(selector.family, selector.table))
      if (current === undefined) return
      const next = copyTable(current)
      // chain by chain, as the Linux backend falls back to when one restore cannot do all
      for (const chain of selector.chains) {
        const entry = next.chains.get(chain.entry)
        const jump = entry?.findIndex((rule) => rule.comment === selector.comment && iptablesTarget(rule.args) === chain.name && rule.args.length === 2) ?? -1
        if (entry !== undefined && jump >= 0) next.chains.set(chain.entry, entry.filter((_, i) => i !== jump))
        if (!next.chains.has(chain.name)) continue
        const referenced = [...next.chains.values()].some((rules) => rules.some((rule) => iptablesTarget(rule.args) === chain.name))
        if (referenced) {
          ns.iptables.set(tableKey(selector.family, selector.table), next)
          return yield* fail("deleteIptablesPodChains", "Busy", `deleteIptablesPodChains: ${chain.name}: Too many links`, "EMLINK")
        }
        next.chains.delete(chain.name)
      }
      ns.iptables.set(tableKey(selector.family, selector.table), next)
    }),

  listIptablesChains: (
    netns: NetnsPath,
    where: { readonly family: IpFamily; readonly table: IptablesTable; readonly chains: ReadonlyArray<string> }
  ): Effect.Effect<IptablesListing, BackendError> =>
    Effect.gen(function*() {
      const ns = yield* requireNetns(state, "listIptablesChains", netns)
      const problem = iptablesTableProblem(where.table) ?? where.chains.map((c) => (isTscniChain(c) ? undefined : `bad chain name '${c}'`)).find((p) => p !== undefined)
      if (problem !== undefined) return yield* fail("listIptablesChains", "Invalid", `listIptablesChains: ${problem}`, "EINVAL")
      const table = ns.iptables.get(tableKey(where.family, where.table))
      const chains = where.chains.filter((chain) => table?.chains.has(chain) === true).sort()
      return {
        chains,
        rules: where.chains.filter((chain) => chains.includes(chain)).flatMap((chain) =>
          (table?.chains.get(chain) ?? []).map((rule) => ({ chain, args: [...rule.args], comment: rule.comment }))
        )
      }
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
