import type { IptablesBatch, IptablesBuiltinChain, IptablesListing, IptablesPodBatch, IptablesPodSelector, IptablesTable } from "./model.ts"

/**
 * Rules both iptables backends enforce the same way, so an invalid batch is refused as
 * `Invalid` (changing nothing) on the mock exactly as on the kernel.
 */

/** Prefix of every chain tscni creates; chains without it are never created or removed. */
export const IPTABLES_CHAIN_PREFIX = "TSCNI-"

/** The comment on tscni's jumps from built-in chains into its own (owner comments must differ). */
export const IPTABLES_JUMP_COMMENT = "tscni"

/** The built-in chains of each table tscni uses. */
export const IPTABLES_BUILTIN_CHAINS: Readonly<Record<IptablesTable, ReadonlyArray<IptablesBuiltinChain>>> = {
  nat: ["PREROUTING", "INPUT", "OUTPUT", "POSTROUTING"],
  filter: ["INPUT", "FORWARD", "OUTPUT"],
  mangle: ["PREROUTING", "INPUT", "FORWARD", "OUTPUT", "POSTROUTING"]
}

/** `TSCNI-` and up to 22 more of `[A-Z0-9_-]`: iptables allows 28 characters in a chain name. */
const CHAIN_NAME = /^TSCNI-[A-Z0-9_-]{1,22}$/
/** A rule's owner comment, for nftables and iptables: no quotes, spaces or newlines, so it cannot break out of a script line. */
export const RULE_COMMENT = /^[A-Za-z0-9_.:/=-]{1,120}$/
/** one argument: printable, no quotes, backslashes or newlines (spaces are quoted when written) */
const ARGUMENT = /^[^"'\\\n\r\0]{1,256}$/

/**
 * Whether a chain name is one of tscni's (`TSCNI-` prefix, fits iptables' limit): only
 * such chains may be created, listed or removed.
 */
const isIptablesChainName = (name: string): boolean => CHAIN_NAME.test(name)

/** Why an owner comment cannot be used, or undefined. */
export const iptablesCommentProblem = (comment: string): string | undefined =>
  !RULE_COMMENT.test(comment)
    ? `bad comment '${comment}' (1-120 of [A-Za-z0-9_.:/=-])`
    : comment === IPTABLES_JUMP_COMMENT
    ? `'${IPTABLES_JUMP_COMMENT}' is the comment of tscni's jumps, not an owner`
    : undefined

const argumentsProblem = (args: ReadonlyArray<string>, what: string): string | undefined => {
  const bad = args.find((arg) => !ARGUMENT.test(arg) || arg.trim() === "")
  if (bad !== undefined) return `${what}: bad argument ${JSON.stringify(bad)}`
  if (args.includes("--comment")) return `${what}: the comment is the batch's, not an argument`
  return undefined
}

/** Why the batch would be refused as a whole, or undefined. */
export const iptablesBatchProblem = (batch: IptablesBatch): string | undefined => {
  if (batch.family !== 4 && batch.family !== 6) return `bad family ${String(batch.family)}`
  const builtins = IPTABLES_BUILTIN_CHAINS[batch.table]
  if (builtins === undefined) return `unknown table '${String(batch.table)}'`
  const comment = iptablesCommentProblem(batch.comment)
  if (comment !== undefined) return comment
  const declared = new Set<string>()
  for (const chain of batch.chains) {
    if (!isIptablesChainName(chain.name)) return `bad chain name '${chain.name}' (TSCNI- and up to 22 of [A-Z0-9_-])`
    if (declared.has(chain.name)) return `chain ${chain.name} declared twice`
    declared.add(chain.name)
    const from = new Set<string>()
    for (const jump of chain.jumpFrom ?? []) {
      if (!builtins.includes(jump.chain)) return `the ${batch.table} table has no built-in chain ${jump.chain}`
      if (from.has(jump.chain)) return `two jumps from ${jump.chain} into ${chain.name}`
      from.add(jump.chain)
      const problem = argumentsProblem(jump.match ?? [], `jump into ${chain.name}`)
      if (problem !== undefined) return problem
    }
  }
  if (batch.rules.length === 0) return "a batch needs at least one rule"
  for (const rule of batch.rules) {
    if (!declared.has(rule.chain)) return `rule in chain '${rule.chain}', which the batch does not declare`
    if (rule.args.length === 0) return `an empty rule in ${rule.chain}`
    const problem = argumentsProblem(rule.args, `rule in ${rule.chain}`)
    if (problem !== undefined) return problem
  }
  return undefined
}

/** Why a batch of per-attachment chains would be refused as a whole, or undefined. */
export const iptablesPodBatchProblem = (batch: IptablesPodBatch): string | undefined => {
  const shared = iptablesBatchProblem({
    family: batch.family,
    table: batch.table,
    comment: batch.comment,
    chains: [...new Map(batch.chains.map((chain) => [chain.entry.name, chain.entry])).values()],
    rules: batch.chains.map((chain) => ({ chain: chain.entry.name, args: ["-j", chain.name] }))
  })
  if (shared !== undefined) return shared
  const names = new Set<string>()
  for (const chain of batch.chains) {
    if (!isIptablesChainName(chain.name)) return `bad chain name '${chain.name}' (TSCNI- and up to 22 of [A-Z0-9_-])`
    if (names.has(chain.name) || chain.name === chain.entry.name) return `chain ${chain.name} declared twice`
    names.add(chain.name)
    if (chain.rules.length === 0) return `chain ${chain.name} needs at least one rule`
    for (const args of chain.rules) {
      if (args.length === 0) return `an empty rule in ${chain.name}`
      const problem = argumentsProblem(args, `rule in ${chain.name}`)
      if (problem !== undefined) return problem
    }
  }
  return undefined
}

/** Why a selector of per-attachment chains cannot be used, or undefined. */
export const iptablesPodSelectorProblem = (selector: IptablesPodSelector): string | undefined =>
  iptablesTableProblem(selector.table) ??
    iptablesCommentProblem(selector.comment) ??
    selector.chains.map((chain) =>
      !isIptablesChainName(chain.name) || !isIptablesChainName(chain.entry) ? `bad chain name '${chain.name}' or '${chain.entry}'` : undefined
    ).find((problem) => problem !== undefined)

/** The chain a rule jumps (`-j`) or goes (`-g`) to, or its target extension (`MASQUERADE`). */
export const iptablesTarget = (args: ReadonlyArray<string>): string | undefined => {
  for (let i = args.length - 2; i >= 0; i--) {
    if (args[i] === "-j" || args[i] === "--jump" || args[i] === "-g" || args[i] === "--goto") return args[i + 1]
  }
  return undefined
}

/** Why a table cannot be used (one iptables does not have), or undefined. */
export const iptablesTableProblem = (table: IptablesTable): string | undefined =>
  IPTABLES_BUILTIN_CHAINS[table] === undefined ? `unknown table '${String(table)}'` : undefined

/** A chain of tscni's (by prefix: what listings show and deletions may touch). */
export const isTscniChain = (chain: string): boolean => chain.startsWith(IPTABLES_CHAIN_PREFIX)

/** Whether a rule is tscni's jump into `chain`. */
export const isJumpInto = (rule: { readonly args: ReadonlyArray<string>; readonly comment: string }, chain: string): boolean =>
  rule.comment === IPTABLES_JUMP_COMMENT && iptablesTarget(rule.args) === chain

/**
 * tscni's view of one table, the same from the kernel's iptables-save and the mock's model:
 * its chains (by name) and, in iptables-save's order (built-in chains in hook order, then
 * the others by name), the rules of its chains and the jumps into them.
 */
export const iptablesListing = (
  table: IptablesTable,
  chains: ReadonlyArray<string>,
  rulesOf: (chain: string) => ReadonlyArray<{ readonly args: ReadonlyArray<string>; readonly comment: string }>
): IptablesListing => {
  const builtins: ReadonlyArray<string> = IPTABLES_BUILTIN_CHAINS[table]
  const order = [...builtins, ...chains.filter((chain) => !builtins.includes(chain)).sort()]
  const rules = order.flatMap((chain) =>
    rulesOf(chain)
      .filter((rule) => {
        const target = iptablesTarget(rule.args)
        return isTscniChain(chain) || (rule.comment === IPTABLES_JUMP_COMMENT && target !== undefined && isTscniChain(target))
      })
      .map((rule) => ({ chain, args: [...rule.args], comment: rule.comment }))
  )
  return { chains: chains.filter(isTscniChain).sort(), rules }
}
