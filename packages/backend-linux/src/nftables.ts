import { CString, dlopen, FFIType } from "bun:ffi"
import { BackendError, FILTER_FAMILIES, type FilterRule, filterRuleProblem, HOST_NETNS, type NftTableRef } from "@tscni/backend"
import { KernelCallFailed } from "./errors.ts"
import { inNetns, namespaceIdentity } from "./netns.ts"

/**
 * Packet filtering through libnftables (Debian libnftables1) over bun:ffi: each call is
 * one nft script, which the kernel applies as one atomic transaction. Only tables tscni
 * names are ever touched.
 */

const NFT_CTX_OUTPUT_HANDLE = 1 << 3

type Library = ReturnType<typeof openLibrary>
const openLibrary = () =>
  dlopen("libnftables.so.1", {
    nft_ctx_new: { args: [FFIType.u32], returns: FFIType.ptr },
    nft_ctx_free: { args: [FFIType.ptr], returns: FFIType.void },
    nft_ctx_buffer_output: { args: [FFIType.ptr], returns: FFIType.i32 },
    nft_ctx_buffer_error: { args: [FFIType.ptr], returns: FFIType.i32 },
    nft_ctx_output_set_flags: { args: [FFIType.ptr, FFIType.u32], returns: FFIType.void },
    nft_ctx_get_output_buffer: { args: [FFIType.ptr], returns: FFIType.ptr },
    nft_ctx_get_error_buffer: { args: [FFIType.ptr], returns: FFIType.ptr },
    nft_run_cmd_from_buffer: { args: [FFIType.ptr, FFIType.cstring], returns: FFIType.i32 }
  })

let library: Library | undefined
const nft = (operation: string): Library["symbols"] => {
  if (!library) {
    try {
      library = openLibrary()
    } catch (error) {
      throw new KernelCallFailed(
        new BackendError({
          operation,
          reason: "Unsupported",
          message: `${operation}: libnftables.so.1 is not available (install Debian's libnftables1): ${String(error)}`
        })
      )
    }
  }
  return library.symbols
}

type Pointer = NonNullable<ReturnType<Library["symbols"]["nft_ctx_new"]>>
/** nft contexts by namespace path, each with the identity of the namespace it was made in (see namespaceIdentity). */
const contexts = new Map<string, { readonly context: Pointer; readonly identity: string | undefined }>()

/** Frees the namespace's nft context (and its netlink socket), e.g. before the namespace is deleted. */
export const closeContext = (netns: string): void => {
  const entry = contexts.get(netns)
  if (entry && library) library.symbols.nft_ctx_free(entry.context)
  contexts.delete(netns)
}

/** Every namespace other than the process's own that an nft context is open in. */
export const namespacesWithContexts = (): ReadonlyArray<string> => [...contexts.keys()].filter((netns) => netns !== HOST_NETNS)

const readBuffer = (pointer: ReturnType<Library["symbols"]["nft_ctx_get_output_buffer"]>): string =>
  pointer === null ? "" : new CString(pointer).toString()

/** How often a script whose listing another writer interrupted is run again (each try is sub-millisecond). */
const INTERRUPTED_RETRIES = 20

/**
 * Runs an nft script inside the namespace (synchronously: the library's netlink socket is
 * opened and used there). Returns stdout; throws KernelCallFailed with nft's error text.
 */
export const runNft = (netns: string, operation: string, script: string): string =>
  inNetns(netns, () => {
    const symbols = nft(operation)
    const identity = namespaceIdentity(netns)
    if (contexts.get(netns)?.identity !== identity) closeContext(netns)
    let context = contexts.get(netns)?.context
    if (!context) {
      const created = symbols.nft_ctx_new(0)
      if (created === null) throw new KernelCallFailed(new BackendError({ operation, reason: "Unknown", message: `${operation}: nft_ctx_new failed` }))
      symbols.nft_ctx_buffer_output(created)
      symbols.nft_ctx_buffer_error(created)
      symbols.nft_ctx_output_set_flags(created, NFT_CTX_OUTPUT_HANDLE)
      contexts.set(netns, { context: created, identity })
      context = created
    }
    const input = Buffer.from(script + "\0")
    let status = symbols.nft_run_cmd_from_buffer(context, input)
    let output = readBuffer(symbols.nft_ctx_get_output_buffer(context))
    let errors = readBuffer(symbols.nft_ctx_get_error_buffer(context))
    // A netlink dump another writer interrupted (NLM_F_DUMP_INTR) fails with EINTR before
    // anything is sent: run the script again, a few times.
    for (let retry = 0; status !== 0 && retry < INTERRUPTED_RETRIES && /Interrupted system call/.test(errors); retry++) {
      status = symbols.nft_run_cmd_from_buffer(context, input)
      output = readBuffer(symbols.nft_ctx_get_output_buffer(context))
      errors = readBuffer(symbols.nft_ctx_get_error_buffer(context))
    }
    if (status !== 0) {
      const text = errors.trim()
      const reason = /No such file or directory/.test(text) ? "NotFound" : /File exists/.test(text) ? "AlreadyExists" : /busy/i.test(text) ? "Busy" : "Invalid"
      throw new KernelCallFailed(new BackendError({ operation, reason, message: `${operation}: ${text.split("\n")[0] ?? "nft failed"}` }))
    }
    return output
  })

/** A rule as `nft -a list ruleset` shows it, with where it lives and its handle. */
export interface ListedRule extends FilterRule {
  readonly handle: number
}

interface ListedChain {
  readonly family: FilterRule["family"]
  readonly table: string
  readonly chain: string
}

const isFamily = (name: string): name is FilterRule["family"] => FILTER_FAMILIES.has(name)

/** `{` minus `}` on a line, outside double-quoted strings (comments, interface names). */
const braceBalance = (line: string): number => {
  let balance = 0
  let quoted = false
  for (const char of line) {
    if (char === '"') quoted = !quoted
    else if (!quoted && char === "{") balance++
    else if (!quoted && char === "}") balance--
  }
  return balance
}

/**
 * Parses nft's text listing (with handles) into rules and the chains that exist. Blocks
 * are tracked by their braces, so sets, maps, flowtables and named objects (and their
 * multi-line element lists) are skipped instead of being mistaken for a table's end;
 * tables of families tscni does not use (arp) are skipped whole.
 */
export const parseRuleset = (text: string): { rules: Array<ListedRule>; chains: Array<ListedChain> } => {
  const rules: Array<ListedRule> = []
  const chains: Array<ListedChain> = []
  /** what each open brace belongs to, innermost last */
  const blocks: Array<"table" | "chain" | "other"> = []
  let table: { family: FilterRule["family"]; name: string } | undefined
  let chain: string | undefined
  for (const raw of text.split("\n")) {
    const line = raw.trim()
    const balance = braceBalance(line)
    const tableMatch = /^table (\S+) (\S+) \{/.exec(line)
    const chainMatch = /^chain (\S+) \{/.exec(line)
    if (tableMatch && blocks.length === 0) {
      const family = tableMatch[1]!
      table = isFamily(family) ? { family, name: tableMatch[2]! } : undefined
      blocks.push("table")
    } else if (chainMatch && blocks.length === 1 && blocks[0] === "table") {
      chain = chainMatch[1]!
      if (table) chains.push({ family: table.family, table: table.name, chain })
      blocks.push("chain")
    } else if (balance > 0) {
      for (let i = 0; i < balance; i++) blocks.push("other")
    } else if (balance < 0) {
      for (let i = 0; i < -balance; i++) {
        const closed = blocks.pop()
        if (closed === "chain") chain = undefined
        if (closed === "table") table = undefined
      }
    } else if (blocks.length === 2 && blocks[1] === "chain" && table && chain !== undefined) {
      const ruleMatch = /^(.*?)(?: comment "([^"]*)")? # handle (\d+)$/.exec(line)
      if (!ruleMatch || /^(type|policy) /.test(ruleMatch[1]!)) continue
      rules.push({
        family: table.family,
        table: table.name,
        chain,
        rule: ruleMatch[1]!,
        comment: ruleMatch[2] ?? "",
        handle: Number(ruleMatch[3])
      })
    }
  }
  return { rules, chains }
}

const invalid = (operation: string, message: string) =>
  new KernelCallFailed(new BackendError({ operation, reason: "Invalid", message: `${operation}: ${message}` }))

/** ` { type … hook … priority … ; }`: how `add chain` declares a base chain. */
export const baseChainSpec = (base: NonNullable<FilterRule["baseChain"]>): string => {
  const device = base.device === undefined ? "" : ` device "${base.device}"`
  return ` { type ${base.type} hook ${base.hook}${device} priority ${base.priority} ; }`
}

/** The script that adds rules: tables and chains are declared with `add` (idempotent). */
export const addRulesScript = (rules: ReadonlyArray<FilterRule>): string => {
  const lines: Array<string> = []
  const declared = new Set<string>()
  for (const rule of rules) {
    const problem = filterRuleProblem(rule)
    if (problem !== undefined) throw invalid("addFilterRules", problem)
    const tableKey = `${rule.family} ${rule.table}`
    if (!declared.has(tableKey)) {
      lines.push(`add table ${tableKey}`)
      declared.add(tableKey)
    }
    const chainKey = `${tableKey} ${rule.chain}`
    if (!declared.has(chainKey)) {
      lines.push(`add chain ${chainKey}${rule.baseChain === undefined ? "" : baseChainSpec(rule.baseChain)}`)
      declared.add(chainKey)
    }
    lines.push(`add rule ${chainKey} ${rule.rule} comment "${rule.comment}"`)
  }
  return lines.join("\n")
}

/**
 * The script that removes every rule of `table` with `comment`, and the chains and table
 * it leaves empty (tscni's tables exist only while they hold rules, so DEL of the last
 * pod leaves the host as it was).
 */
export const deleteRulesScript = (
  listing: ReturnType<typeof parseRuleset>,
  table: string,
  comment: string,
  options: { readonly rulesOnly?: boolean } = {}
): string => {
  const lines: Array<string> = []
  const inTable = listing.rules.filter((rule) => rule.table === table)
  const doomed = inTable.filter((rule) => rule.comment === comment)
  if (doomed.length === 0) return ""
  for (const rule of doomed) lines.push(`delete rule ${rule.family} ${rule.table} ${rule.chain} handle ${rule.handle}`)
  if (options.rulesOnly === true) return lines.join("\n")
  const families = new Set(doomed.map((rule) => rule.family))
  for (const family of families) {
    const chains = listing.chains.filter((chain) => chain.family === family && chain.table === table)
    const emptied = chains.filter((chain) =>
      !inTable.some((rule) => rule.family === family && rule.chain === chain.chain && rule.comment !== comment)
    )
    for (const chain of emptied) lines.push(`delete chain ${family} ${table} ${chain.chain}`)
    if (emptied.length === chains.length) lines.push(`delete table ${family} ${table}`)
  }
  return lines.join("\n")
}

/**
 * One table, parsed (empty when it does not exist): listFilterRules and the delete/sweep
 * scripts work from this listing, never from the whole ruleset.
 */
export const listRules = (netns: string, operation: string, table: NftTableRef): ReturnType<typeof parseRuleset> => {
  if (!/^[A-Za-z][A-Za-z0-9_-]{0,63}$/.test(table.name)) {
    throw new KernelCallFailed(new BackendError({ operation, reason: "Invalid", message: `${operation}: bad table name '${table.name}'` }))
  }
  try {
    return parseRuleset(runNft(netns, operation, `list table ${table.family} ${table.name}`))
  } catch (error) {
    if (error instanceof KernelCallFailed && error.error.reason === "NotFound" && error.error.netns !== true) return { rules: [], chains: [] }
    throw error
  }
}

/**
 * Chains of `table` that hold no rule, and the table itself when no chain is left: what two
 * DELs running at once can leave (each saw the other's rule, so neither removed the chain).
 * A `delete chain` of a chain that gained a rule meanwhile fails the whole script: harmless.
 */
export const sweepScript = (listing: ReturnType<typeof parseRuleset>, table: string): string => {
  const lines: Array<string> = []
  const families = new Set(listing.chains.filter((chain) => chain.table === table).map((chain) => chain.family))
  for (const family of families) {
    const chains = listing.chains.filter((chain) => chain.family === family && chain.table === table)
    const empty = chains.filter((chain) => !listing.rules.some((rule) => rule.family === family && rule.table === table && rule.chain === chain.chain))
    for (const chain of empty) lines.push(`delete chain ${family} ${table} ${chain.chain}`)
    if (empty.length === chains.length && chains.length > 0) lines.push(`delete table ${family} ${table}`)
  }
  return lines.join("\n")
}

const DELETE_ATTEMPTS = 4

/**
 * Removes an owner's rules from one table, and the chains and table that leaves empty,
 * tolerating other plugins' ADDs and DELs on the same table at the same time: a transaction
 * that lost a race (a chain gained a rule after the listing) is rebuilt from a fresh
 * listing; the last try removes only the rules. Afterwards, chains and tables left empty
 * are swept. (Only the layout before keyed tables has such rules: see nftSets.ts.)
 */
export const deleteRules = (netns: string, table: NftTableRef, comment: string): void => {
  for (let attempt = 1; ; attempt++) {
    const script = deleteRulesScript(listRules(netns, "deleteFilterRules", table), table.name, comment, { rulesOnly: attempt === DELETE_ATTEMPTS })
    if (script === "") break
    try {
      runNft(netns, "deleteFilterRules", script)
      break
    } catch (error) {
      if (attempt === DELETE_ATTEMPTS) throw error
    }
  }
  const sweep = sweepScript(listRules(netns, "deleteFilterRules", table), table.name)
  if (sweep === "") return
  try {
    runNft(netns, "deleteFilterRules", sweep)
  } catch (error) {
    // someone added a rule since (the chain is in use again: EBUSY), or another DEL swept it
    // first (ENOENT); anything else is a failure
    if (!(error instanceof KernelCallFailed && (error.error.reason === "Busy" || error.error.reason === "NotFound"))) throw error
  }
}
