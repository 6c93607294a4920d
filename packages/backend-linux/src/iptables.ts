import { Duration, Effect } from "effect"
import { LOCK_DIR, withFileLock } from "@tscni/lock"
import {
  BackendError,
  type BackendErrorReason,
  HOST_NETNS,
  type IpFamily,
  IPTABLES_JUMP_COMMENT,
  type IptablesBatch,
  iptablesBatchProblem,
  type IptablesChain,
  type IptablesPodBatch,
  iptablesPodBatchProblem,
  type IptablesPodSelector,
  iptablesPodSelectorProblem,
  iptablesCommentProblem,
  type IptablesListedRule,
  type IptablesListing,
  iptablesListing,
  isJumpInto,
  isTscniChain,
  iptablesTableProblem,
  type IptablesSelector,
  type IptablesTable
} from "@tscni/backend"
import { KernelCallFailed } from "./errors.ts"
import { withNetnsFd } from "./netns.ts"

/**
 * iptables through its own tools: `iptables-save -t <table>` to read, `iptables-restore
 * --noflush` to write (ip6tables-* for IPv6), run in the target namespace with `nsenter
 * --net=<path>` (util-linux) or directly for HOST_NETNS. One restore is one atomic
 * transaction (iptables-nft commits one nf_tables batch; legacy replaces the table once,
 * under the xtables lock). Works the same on iptables-nft (Debian's default) and legacy.
 *
 * Writes are built from a fresh save: a chain is declared only when it is missing (with
 * --noflush, `:CHAIN` or `-N` on an existing chain would flush or fail), a jump only when
 * it is not there yet, and deletions are the saved rule lines with `-A` turned into `-D`
 * (iptables-save's text is what iptables-restore reads back). Another writer may change
 * the table between save and restore; the restore then fails (a chain exists / is gone /
 * is busy) and the call is rebuilt from a new save, a few times.
 */

/** One rule line of a save: where it is, its arguments without the comment, and the line itself. */
export interface SavedRule extends IptablesListedRule {
  /** the line as saved, `-A CHAIN …`: `-D` + the rest deletes exactly this rule */
  readonly line: string
}

/** One table as iptables-save prints it. */
export interface SavedTable {
  /** every chain, built-in ones included */
  readonly chains: ReadonlyArray<string>
  readonly rules: ReadonlyArray<SavedRule>
}

/** Splits a save line into words: double quotes group (with `\"` and `\\` escapes inside), as iptables-restore reads them. */
export const splitWords = (line: string): Array<string> => {
  const words: Array<string> = []
  let word = ""
  let inWord = false
  let quoted = false
  for (let i = 0; i < line.length; i++) {
    const char = line[i]!
    if (quoted) {
      if (char === "\\" && (line[i + 1] === '"' || line[i + 1] === "\\")) word += line[++i]
      else if (char === '"') quoted = false
      else word += char
    } else if (char === '"') {
      quoted = true
      inWord = true
    } else if (char === " " || char === "\t") {
      if (inWord) words.push(word)
      word = ""
      inWord = false
    } else {
      word += char
      inWord = true
    }
  }
  if (inWord) words.push(word)
  return words
}

/** Takes the first `-m comment --comment X` out of a rule's arguments. */
const withoutComment = (args: ReadonlyArray<string>): { args: Array<string>; comment: string } => {
  for (let i = 0; i + 3 < args.length; i++) {
    if (args[i] === "-m" && args[i + 1] === "comment" && args[i + 2] === "--comment") {
      return { args: [...args.slice(0, i), ...args.slice(i + 4)], comment: args[i + 3]! }
    }
  }
  return { args: [...args], comment: "" }
}

/** Parses the output of `iptables-save -t <table>` (one table). */
export const parseSave = (text: string): SavedTable => {
  const chains: Array<string> = []
  const rules: Array<SavedRule> = []
  for (const raw of text.split("\n")) {
    const line = raw.trim()
    if (line.startsWith(":")) {
      const name = line.slice(1).split(" ")[0]
      if (name) chains.push(name)
    } else if (line.startsWith("-A ")) {
      const [, chain, ...rest] = splitWords(line)
      if (chain === undefined) continue
      rules.push({ chain, ...withoutComment(rest), line })
    }
  }
  return { chains, rules }
}

/** tscni's view of a saved table (iptablesListing). */
export const listingOf = (table: IptablesTable, saved: SavedTable): IptablesListing =>
  iptablesListing(table, saved.chains, (chain) => saved.rules.filter((rule) => rule.chain === chain))

/** One argument as restore reads it: quoted when it holds a space (validated arguments hold no quotes). */
const word = (arg: string): string => (/[\s#]/.test(arg) ? `"${arg}"` : arg)

const commentArgs = (comment: string): Array<string> => ["-m", "comment", "--comment", comment]

/** The restore script that adds `batch` to a table that looks like `saved`. */
export const addScript = (batch: IptablesBatch, saved: SavedTable): string => {
  const lines = [`*${batch.table}`]
  const existing = new Set(saved.chains)
  for (const chain of batch.chains) if (!existing.has(chain.name)) lines.push(`-N ${chain.name}`)
  const rule = (chain: string, args: ReadonlyArray<string>) =>
    [chain, ...commentArgs(batch.comment), ...args].map(word).join(" ")
  const inserted = new Map<string, Array<string>>()
  for (const spec of batch.rules) {
    if (spec.position === "insert") inserted.set(spec.chain, [...(inserted.get(spec.chain) ?? []), rule(spec.chain, spec.args)])
    else lines.push(`-A ${rule(spec.chain, spec.args)}`)
  }
  // inserting each at position 1, last first, keeps the batch's order at the top
  for (const rules of inserted.values()) for (const text of [...rules].reverse()) lines.push(`-I ${text.replace(" ", " 1 ")}`)
  // jumps last: the chains are complete by the time traffic is sent into them (all at once anyway)
  for (const chain of batch.chains) {
    for (const jump of chain.jumpFrom ?? []) {
      if (saved.rules.some((r) => r.chain === jump.chain && isJumpInto(r, chain.name))) continue
      const text = [jump.chain, ...(jump.match ?? []), ...commentArgs(IPTABLES_JUMP_COMMENT), "-j", chain.name].map(word).join(" ")
      lines.push(jump.position === "insert" ? `-I ${text.replace(" ", " 1 ")}` : `-A ${text}`)
    }
  }
  lines.push("COMMIT", "")
  return lines.join("\n")
}

/**
 * The restore script that removes the owner's rules from tscni's chains, then the chains
 * that leaves empty and the jumps into them; "" when there is nothing to remove.
 * `touched` collects the chains that held the owner's rules.
 */
export const deleteScript = (selector: IptablesSelector, saved: SavedTable, touched?: Set<string>): string => {
  const doomed = saved.rules.filter((rule) => isTscniChain(rule.chain) && rule.comment === selector.comment)
  if (doomed.length === 0) return ""
  const chains = [...new Set(doomed.map((rule) => rule.chain))]
  for (const chain of chains) touched?.add(chain)
  const emptied = chains.filter((chain) => saved.rules.every((rule) => rule.chain !== chain || doomed.includes(rule)))
  return script(selector.table, [...doomed, ...jumpsInto(emptied, saved)], emptied)
}

/**
 * The restore script that removes those of `chains` that exist and hold no rule, with the
 * jumps into them; "" when there are none. Two owners deleted at the same time each see
 * the other's rule still there; whichever finishes last removes the chain with this.
 */
export const emptyChainsScript = (table: IptablesTable, chains: ReadonlySet<string>, saved: SavedTable): string => {
  const empty = saved.chains.filter((chain) => chains.has(chain) && isTscniChain(chain) && !saved.rules.some((rule) => rule.chain === chain))
  return empty.length === 0 ? "" : script(table, jumpsInto(empty, saved), empty)
}

const jumpsInto = (chains: ReadonlyArray<string>, saved: SavedTable): Array<SavedRule> =>
  saved.rules.filter((rule) => chains.some((chain) => isJumpInto(rule, chain)))

const script = (table: IptablesTable, deleted: ReadonlyArray<SavedRule>, chains: ReadonlyArray<string>): string =>
  [`*${table}`, ...deleted.map((rule) => `-D${rule.line.slice(2)}`), ...chains.map((chain) => `-X ${chain}`), "COMMIT", ""].join("\n")

// ---- running the tools ----

const SEARCH_PATH = [process.env.PATH ?? "", "/usr/sbin", "/sbin", "/usr/bin", "/bin"].filter((p) => p !== "").join(":")

interface Outcome {
  readonly exitCode: number
  readonly stdout: string
  readonly stderr: string
}

const failure = (operation: string, reason: BackendErrorReason, message: string, netns?: true): BackendError =>
  new BackendError({ operation, reason, message: `${operation}: ${message}`, ...(netns ? { netns } : {}) })

/** A tool by name, searched on PATH and the usual sbin directories; Unsupported when missing. */
const tool = (operation: string, name: string): Effect.Effect<string, BackendError> =>
  Effect.suspend(() => {
    const path = Bun.which(name, { PATH: SEARCH_PATH })
    return path === null
      ? Effect.fail(failure(operation, "Unsupported", `${name} is not installed (Debian: apt install ${name.startsWith("nsenter") ? "util-linux" : "iptables"})`))
      : Effect.succeed(path)
  })

/** The namespace must exist (NotFound with `netns` otherwise, as for every other operation). */
const requireNetns = (operation: string, path: string): Effect.Effect<void, BackendError> =>
  path === HOST_NETNS
    ? Effect.void
    : Effect.try({
      try: () => withNetnsFd(path, () => undefined),
      catch: (error) => {
        if (!(error instanceof KernelCallFailed)) return failure(operation, "Unknown", String(error))
        const { reason, message, errno, netns } = error.error
        return new BackendError({ operation, reason, message, ...(errno ? { errno } : {}), ...(netns ? { netns } : {}) })
      }
    })

/** Runs a tool in the namespace, feeding `input` on stdin. */
const run = (operation: string, netns: string, argv: ReadonlyArray<string>, input?: string): Effect.Effect<Outcome, BackendError> =>
  Effect.gen(function*() {
    const binary = yield* tool(operation, argv[0]!)
    const command = netns === HOST_NETNS
      ? [binary, ...argv.slice(1)]
      : [yield* tool(operation, "nsenter"), `--net=${netns}`, "--", binary, ...argv.slice(1)]
    return yield* Effect.tryPromise({
      try: async () => {
        const proc = Bun.spawn(command, {
          stdin: input === undefined ? "ignore" : Buffer.from(input),
          stdout: "pipe",
          stderr: "pipe"
        })
        const [stdout, stderr, exitCode] = await Promise.all([
          new Response(proc.stdout).text(),
          new Response(proc.stderr).text(),
          proc.exited
        ])
        return { exitCode, stdout, stderr }
      },
      catch: (error) => failure(operation, "Unknown", `cannot run ${argv[0]}: ${String(error)}`)
    })
  })

/** What a failed iptables tool said, as a reason. */
export const reasonOf = (text: string): BackendErrorReason => {
  if (/Table does not exist|insmod|Protocol not supported|Address family not supported|not supported by the kernel/i.test(text)) {
    return "Unsupported"
  }
  if (/xtables lock|Resource temporarily unavailable|Device or resource busy|Directory not empty|Too many links/i.test(text)) return "Busy"
  if (/Chain already exists|File exists/i.test(text)) return "AlreadyExists"
  if (/does a matching rule exist|does not exist|No chain\/target\/match by that name|Couldn't load target|Index of insertion too big/i.test(text)) {
    return "NotFound"
  }
  if (/Permission denied|Operation not permitted|must be root/i.test(text)) return "PermissionDenied"
  return "Invalid"
}

/** The tool's own words, without its usage hints and warnings. */
const summary = (text: string): string =>
  text
    .split("\n")
    .map((line) => line.trim())
    .filter((line) => line !== "" && !line.startsWith("Try `") && !line.startsWith("# Warning"))
    .join("; ")

const checkOutcome = (operation: string, what: string, outcome: Outcome): Effect.Effect<Outcome, BackendError> => {
  if (outcome.exitCode === 0) return Effect.succeed(outcome)
  const text = summary(outcome.stderr) || `exit code ${outcome.exitCode}`
  if (/^nsenter: /m.test(outcome.stderr)) {
    const gone = /No such file or directory/.test(outcome.stderr)
    return Effect.fail(failure(operation, gone ? "NotFound" : "Unknown", text, gone ? true : undefined))
  }
  return Effect.fail(failure(operation, reasonOf(text), `${what}: ${text}`))
}

const tools = (family: IpFamily) =>
  family === 4 ? { save: "iptables-save", restore: "iptables-restore" } : { save: "ip6tables-save", restore: "ip6tables-restore" }

/** The table as it is now. */
const save = (operation: string, netns: string, family: IpFamily, table: IptablesTable): Effect.Effect<SavedTable, BackendError> =>
  Effect.gen(function*() {
    const argv = [tools(family).save, "-t", table]
    const outcome = yield* checkOutcome(operation, argv.join(" "), yield* run(operation, netns, argv))
    return parseSave(outcome.stdout)
  })

/** One transaction. `-w`: wait for the xtables lock (legacy iptables) instead of failing. */
const restore = (operation: string, netns: string, family: IpFamily, script: string): Effect.Effect<void, BackendError> =>
  Effect.gen(function*() {
    const argv = [tools(family).restore, "--noflush", "-w"]
    yield* checkOutcome(operation, `${argv.join(" ")} (${script.split("\n").slice(1, -2).join(" / ")})`, yield* run(operation, netns, argv, script))
  })

/**
 * Failures no new save can cure. Anything else may be another writer's change between our
 * save and restore (iptables-nft words some of those races in ways no pattern foresees),
 * so it is retried from a fresh save; a script that is simply wrong fails every attempt.
 */
const FINAL: ReadonlySet<BackendErrorReason> = new Set(["Unsupported", "PermissionDenied"])
/** Enough for 40 pods racing on one chain on a loaded 2-core machine (4 was not). */
const ATTEMPTS = 10

/** Where tscni's iptables writers take turns (tmpfs, like the lock itself). */
const IPTABLES_LOCK = `${LOCK_DIR}/iptables.lock`

/**
 * One tscni iptables transaction at a time on this machine. iptables-nft takes no lock of
 * its own, and "add the jump unless it is there" is a save followed by a restore: two
 * writers racing between them both add the jump. (Others' writers are not excluded; the
 * retries below cover those.)
 */
const serialized = <A>(operation: string, effect: Effect.Effect<A, BackendError>): Effect.Effect<A, BackendError> =>
  withFileLock(IPTABLES_LOCK, effect, (lock) => failure(operation, "Busy", lock.message), Duration.seconds(30))

/** Saves, builds the script from what is there, restores; again from a new save after a race. */
const transact = (
  operation: string,
  netns: string,
  family: IpFamily,
  table: IptablesTable,
  build: (saved: SavedTable) => string
): Effect.Effect<void, BackendError> =>
  serialized(operation, Effect.gen(function*() {
    for (let attempt = 1; ; attempt++) {
      const script = build(yield* save(operation, netns, family, table))
      if (script === "") return
      const outcome = yield* Effect.result(restore(operation, netns, family, script))
      if (outcome._tag === "Success") return
      if (attempt >= ATTEMPTS || FINAL.has(outcome.failure.reason)) return yield* Effect.fail(outcome.failure)
      // jittered backoff, so racing writers do not retry in lockstep
      yield* Effect.sleep(`${Math.round((5 + Math.random() * 10) * attempt)} millis`)
    }
  }))

const invalid = (operation: string, problem: string | undefined): Effect.Effect<void, BackendError> =>
  problem === undefined ? Effect.void : Effect.fail(failure(operation, "Invalid", problem))

/** The iptables operations of the Linux backend. */
export const addIptablesRules = (netns: string, batch: IptablesBatch): Effect.Effect<void, BackendError> =>
  Effect.gen(function*() {
    const operation = "addIptablesRules"
    yield* requireNetns(operation, netns)
    yield* invalid(operation, iptablesBatchProblem(batch))
    yield* transact(operation, netns, batch.family, batch.table, (saved) => addScript(batch, saved))
  })

/**
 * Removes one owner's rules (by comment) and then, in a second transaction, any of its
 * chains left empty, so concurrent DELs sharing a chain still leave none behind.
 */
export const deleteIptablesRules = (netns: string, selector: IptablesSelector): Effect.Effect<void, BackendError> =>
  Effect.gen(function*() {
    const operation = "deleteIptablesRules"
    yield* requireNetns(operation, netns)
    yield* invalid(operation, iptablesCommentProblem(selector.comment))
    yield* invalid(operation, iptablesTableProblem(selector.table))
    const touched = new Set<string>()
    yield* transact(operation, netns, selector.family, selector.table, (saved) => deleteScript(selector, saved, touched))
    if (touched.size > 0) {
      yield* transact(operation, netns, selector.family, selector.table, (saved) => emptyChainsScript(selector.table, touched, saved))
    }
  })

/**
 * tscni's chains and rules in one table, read from iptables-save: what CHECK and the
 * tests compare against.
 */
export const listIptablesRules = (
  netns: string,
  where: { readonly family: IpFamily; readonly table: IptablesTable }
): Effect.Effect<IptablesListing, BackendError> =>
  Effect.gen(function*() {
    const operation = "listIptablesRules"
    yield* requireNetns(operation, netns)
    yield* invalid(operation, iptablesTableProblem(where.table))
    return listingOf(where.table, yield* save(operation, netns, where.family, where.table))
  })

// ---- per-attachment chains: added and removed by name, the table never saved ----

/** `-I CHAIN 1 …` or `-A CHAIN …` */
const placed = (position: "append" | "insert" | undefined, text: string): string =>
  position === "insert" ? `-I ${text.replace(" ", " 1 ")}` : `-A ${text}`

/** The restore script that creates an owner's chains, their rules and the jumps into them. */
export const podChainsScript = (batch: IptablesPodBatch): string => {
  const lines = [`*${batch.table}`]
  for (const chain of batch.chains) {
    lines.push(`-N ${chain.name}`)
    for (const args of chain.rules) lines.push(`-A ${[chain.name, ...args].map(word).join(" ")}`)
  }
  // jumps last: each chain is complete before traffic is sent into it (all at once anyway)
  for (const chain of batch.chains) {
    lines.push(placed(chain.position, [chain.entry.name, ...commentArgs(batch.comment), "-j", chain.name].map(word).join(" ")))
  }
  lines.push("COMMIT", "")
  return lines.join("\n")
}

/** The restore script that creates shared chains and hooks them into their built-in chains. */
export const entryChainsScript = (table: IptablesTable, entries: ReadonlyArray<IptablesChain>): string => {
  const lines = [`*${table}`]
  for (const entry of entries) lines.push(`-N ${entry.name}`)
  for (const entry of entries) {
    for (const jump of entry.jumpFrom ?? []) {
      lines.push(placed(jump.position, [jump.chain, ...(jump.match ?? []), ...commentArgs(IPTABLES_JUMP_COMMENT), "-j", entry.name].map(word).join(" ")))
    }
  }
  lines.push("COMMIT", "")
  return lines.join("\n")
}

/** The restore script that removes an owner's chains: the jump into each, its rules, the chain. */
export const removePodChainsScript = (selector: IptablesPodSelector, withJumps: boolean): string =>
  [
    `*${selector.table}`,
    ...selector.chains.flatMap((chain) => [
      ...(withJumps ? [`-D ${[chain.entry, ...commentArgs(selector.comment), "-j", chain.name].map(word).join(" ")}`] : []),
      `-F ${chain.name}`,
      `-X ${chain.name}`
    ]),
    "COMMIT",
    ""
  ].join("\n")

/** One chain's rules as `iptables -S CHAIN` prints them; undefined when there is no such chain. */
const listChain = (operation: string, netns: string, family: IpFamily, table: IptablesTable, chain: string): Effect.Effect<SavedTable | undefined, BackendError> =>
  Effect.gen(function*() {
    const argv = [family === 4 ? "iptables" : "ip6tables", "-w", "-t", table, "-S", chain]
    const outcome = yield* run(operation, netns, argv)
    // iptables-nft words a missing chain "incompatible, use 'nft' tool"; legacy "No chain…"
    if (outcome.exitCode !== 0 && /incompatible|No chain\/target\/match by that name/.test(outcome.stderr)) return undefined
    return parseSave((yield* checkOutcome(operation, argv.join(" "), outcome)).stdout)
  })

/** Whether a failed restore names `chain` as missing (not another line's problem). */
const missingChain = (error: BackendError, chain: string): boolean =>
  error.reason === "NotFound" && (error.message.includes(`'${chain}'`) || /No chain\/target\/match by that name/.test(error.message))

/**
 * Adds one owner's chains in one restore. When a shared chain is missing (the first pod),
 * the shared chains are created and hooked in a transaction of their own (someone else may
 * have just done it: "already exists" is fine), then the owner's restore runs again. One of
 * the owner's chains existing already is AlreadyExists, with nothing changed.
 */
export const addIptablesPodChains = (netns: string, batch: IptablesPodBatch): Effect.Effect<ReadonlyArray<string>, BackendError> =>
  Effect.gen(function*() {
    const operation = "addIptablesPodChains"
    yield* requireNetns(operation, netns)
    yield* invalid(operation, iptablesPodBatchProblem(batch))
    const script = podChainsScript(batch)
    const first = yield* Effect.result(restore(operation, netns, batch.family, script))
    if (first._tag === "Success") return []
    const entries = [...new Map(batch.chains.map((chain) => [chain.entry.name, chain.entry])).values()]
    if (!(first.failure.reason === "NotFound" && entries.some((entry) => missingChain(first.failure, entry.name)))) {
      return yield* Effect.fail(first.failure)
    }
    const created: Array<string> = []
    yield* serialized(operation, Effect.gen(function*() {
      for (const entry of entries) {
        const made = yield* Effect.result(restore(operation, netns, batch.family, entryChainsScript(batch.table, [entry])))
        if (made._tag === "Success") created.push(entry.name)
        else if (made.failure.reason !== "AlreadyExists") return yield* Effect.fail(made.failure)
      }
    }))
    yield* restore(operation, netns, batch.family, script)
    return created
  })

/**
 * Removes a shared chain with its hooks when it holds no rule: `-D` of each hook and `-X`
 * in one restore, which iptables refuses as a whole while the chain holds a rule or is
 * jumped to from elsewhere (so no lock is needed against an ADD adding to it).
 */
export const deleteIptablesChainIfEmpty = (
  netns: string,
  where: { readonly family: IpFamily; readonly table: IptablesTable; readonly chain: IptablesChain }
): Effect.Effect<boolean, BackendError> =>
  Effect.gen(function*() {
    const operation = "deleteIptablesChainIfEmpty"
    yield* requireNetns(operation, netns)
    yield* invalid(operation, iptablesTableProblem(where.table) ?? (isTscniChain(where.chain.name) ? undefined : `bad chain name '${where.chain.name}'`))
    const hooks = (where.chain.jumpFrom ?? []).map((jump) =>
      `-D ${[jump.chain, ...(jump.match ?? []), ...commentArgs(IPTABLES_JUMP_COMMENT), "-j", where.chain.name].map(word).join(" ")}`
    )
    const removed = yield* Effect.result(restore(operation, netns, where.family, [`*${where.table}`, ...hooks, `-X ${where.chain.name}`, "COMMIT", ""].join("\n")))
    if (removed._tag === "Success") return true
    if (removed.failure.reason === "Busy" || removed.failure.reason === "NotFound") return false
    return yield* Effect.fail(removed.failure)
  })

/**
 * Removes one owner's chains by name: the jump into each (matched by owner comment and
 * target), its rules, the chain; one restore when all are there. Chains already gone are
 * skipped, one by one; nothing to remove is not an error.
 */
export const deleteIptablesPodChains = (netns: string, selector: IptablesPodSelector): Effect.Effect<void, BackendError> =>
  Effect.gen(function*() {
    const operation = "deleteIptablesPodChains"
    yield* requireNetns(operation, netns)
    yield* invalid(operation, iptablesPodSelectorProblem(selector))
    if (selector.chains.length === 0) return
    const whole = yield* Effect.result(restore(operation, netns, selector.family, removePodChainsScript(selector, true)))
    if (whole._tag === "Success") return
    if (whole.failure.reason !== "NotFound") return yield* Effect.fail(whole.failure)
    // something is gone already: each chain on its own, with its jump, then without
    for (const chain of selector.chains) {
      const one = { ...selector, chains: [chain] }
      const withJump = yield* Effect.result(restore(operation, netns, selector.family, removePodChainsScript(one, true)))
      if (withJump._tag === "Success") continue
      if (withJump.failure.reason !== "NotFound") return yield* Effect.fail(withJump.failure)
      const alone = yield* Effect.result(restore(operation, netns, selector.family, removePodChainsScript(one, false)))
      if (alone._tag === "Failure" && alone.failure.reason !== "NotFound") return yield* Effect.fail(alone.failure)
    }
  })

/**
 * The rules of the named chains of tscni's (missing ones are left out), each read with
 * `iptables -S CHAIN`: what CHECK and GC read, never the whole table.
 */
export const listIptablesChains = (
  netns: string,
  where: { readonly family: IpFamily; readonly table: IptablesTable; readonly chains: ReadonlyArray<string> }
): Effect.Effect<IptablesListing, BackendError> =>
  Effect.gen(function*() {
    const operation = "listIptablesChains"
    yield* requireNetns(operation, netns)
    yield* invalid(operation, iptablesTableProblem(where.table))
    const bad = where.chains.find((chain) => !isTscniChain(chain) || !/^[A-Z0-9_-]{1,28}$/.test(chain))
    yield* invalid(operation, bad === undefined ? undefined : `bad chain name '${bad}'`)
    const chains: Array<string> = []
    const rules: Array<SavedRule> = []
    for (const chain of where.chains) {
      const saved = yield* listChain(operation, netns, where.family, where.table, chain)
      if (saved === undefined) continue
      chains.push(chain)
      rules.push(...saved.rules)
    }
    return { chains: chains.sort(), rules: rules.map(({ chain, args, comment }) => ({ chain, args, comment })) }
  })
