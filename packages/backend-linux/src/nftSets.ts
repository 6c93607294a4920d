/**
 * Keyed nftables tables (see @tscni/backend nftSets.ts): a skeleton is created once, through
 * libnftables (it needs nft's rule compiler); per-pod state is added, looked up and deleted
 * as elements by key over nfnetlink directly (nfnetlink/nftElements.ts), because libnftables
 * 1.0.6 fills its cache before each element command with every chain (create, delete) or
 * every element (get) of the node. None of these lists a ruleset or another table; the
 * table-name listing is a netlink dump of names.
 */
import {
  BackendError,
  type NftChain,
  type NftChanges,
  type NftElement,
  type NftElementKey,
  nftElementProblem,
  type NftSet,
  nftKeyTextProblem,
  type NftTable,
  type NftTableRef,
  nftTableProblem,
  nftTableRefProblem
} from "@tscni/backend"
import { KernelCallFailed } from "./errors.ts"
import * as netlinkElements from "./nfnetlink/nftElements.ts"
import { attrString, decodeAttributes } from "./netlink/message.ts"
import { netfilterSocket } from "./netlink/socket.ts"
import { baseChainSpec, runNft } from "./nftables.ts"

const invalid = (operation: string, message: string) =>
  new KernelCallFailed(new BackendError({ operation, reason: "Invalid", message: `${operation}: ${message}` }))

const notFound = (operation: string, message: string) =>
  new KernelCallFailed(new BackendError({ operation, reason: "NotFound", message: `${operation}: ${message}` }))

const where = (table: NftTableRef): string => `${table.family} ${table.name}`

/** Refuses, before anything is sent, elements that do not fit the skeleton's sets. */
const checkElements = (operation: string, table: NftTable, elements: ReadonlyArray<NftElementKey & { readonly value?: string; readonly comment?: string }>): void => {
  const problem = nftTableProblem(table)
  if (problem !== undefined) throw invalid(operation, problem)
  for (const element of elements) {
    const set = table.sets.find((s) => s.name === element.set)
    if (set === undefined) throw notFound(operation, `table ${where(table)} has no set ${element.set}`)
    const bad = nftElementProblem(set, element)
    if (bad !== undefined) throw invalid(operation, bad)
  }
}

/** Refuses keys that could break out of an element list (gets and deletes take any skeleton's keys). */
const checkKeys = (operation: string, table: NftTableRef, keys: ReadonlyArray<NftElementKey>): void => {
  const problem = nftTableRefProblem(table) ?? keys.map(nftKeyTextProblem).find((p) => p !== undefined)
  if (problem !== undefined) throw invalid(operation, problem)
}

/** One element in nft's element syntax: key, comment, then `: value` for a map. */
const elementText = (element: NftElementKey & { readonly value?: string; readonly comment?: string }): string =>
  `${element.key}${element.comment !== undefined ? ` comment "${element.comment}"` : ""}${element.value !== undefined ? ` : ${element.value}` : ""}`

/** `<verb> element …` lines, one per set, in the order the sets first appear. */
const elementLines = (verb: "add" | "create" | "delete", table: NftTableRef, elements: ReadonlyArray<NftElementKey & { readonly value?: string; readonly comment?: string }>): Array<string> => {
  const bySet = new Map<string, Array<string>>()
  for (const element of elements) bySet.set(element.set, [...(bySet.get(element.set) ?? []), elementText(element)])
  return [...bySet].map(([set, texts]) => `${verb} element ${where(table)} ${set} { ${texts.join(", ")} }`)
}

/** The line that makes a set (or map) of `table`. */
const setLine = (verb: "add" | "create", table: NftTableRef, set: NftSet): string => {
  const kind = set.map === undefined ? "set" : "map"
  const type = set.map === undefined ? set.type : `${set.type} : ${set.map}`
  return `${verb} ${kind} ${where(table)} ${set.name} { type ${type} ;${set.interval === true ? " flags interval ;" : ""} }`
}

/** The lines that make a chain of `table` and its rules. */
const chainLines = (verb: "add" | "create", table: NftTableRef, chain: NftChain): Array<string> => [
  `${verb} chain ${where(table)} ${chain.name}${chain.base === undefined ? "" : baseChainSpec(chain.base)}`,
  ...chain.rules.map((rule) => `add rule ${where(table)} ${chain.name} ${rule}`)
]

/** The script that creates a table's skeleton (failing if the table exists) and its first elements. */
export const createTableScript = (table: NftTable, elements: ReadonlyArray<NftElement>): string => {
  const lines = [`create table ${where(table)}`]
  for (const set of table.sets) lines.push(setLine("add", table, set))
  for (const chain of table.chains) lines.push(...chainLines("add", table, chain))
  // `add`, not `create`: the elements are new in a table made in this same transaction
  lines.push(...elementLines("add", table, elements))
  return lines.join("\n")
}

export const createTable = (netns: string, table: NftTable, elements: ReadonlyArray<NftElement>): void => {
  checkElements("createNftTable", table, elements)
  netlinkElements.forgetTable(netns, table)
  runNft(netns, "createNftTable", createTableScript(table, elements))
}

/**
 * `replaceNftTable`: one transaction that makes the table if missing, deletes it and makes it
 * again as `table` — atomic, so packets never pass through a moment without it.
 */
export const replaceTable = (netns: string, table: NftTable, elements: ReadonlyArray<NftElement>): void => {
  checkElements("replaceNftTable", table, elements)
  netlinkElements.forgetTable(netns, table)
  const create = createTableScript(table, elements).split("\n").slice(1)
  runNft(netns, "replaceNftTable", [`add table ${where(table)}`, `delete table ${where(table)}`, `add table ${where(table)}`, ...create].join("\n"))
}

/** `changeNftTable`: the whole change as one script, so one transaction (see NftChanges for the order). */
export const changeTable = (netns: string, table: NftTableRef, changes: NftChanges): void => {
  const skeleton: NftTable = { family: table.family, name: table.name, sets: [...changes.addSets, ...changes.sets], chains: changes.addChains }
  checkElements("changeNftTable", skeleton, changes.addElements)
  checkKeys("changeNftTable", table, changes.deleteElements)
  netlinkElements.forgetTable(netns, table)
  const lines: Array<string> = []
  // `create`: a set or chain that is there already is refused (AlreadyExists), not merged
  for (const set of changes.addSets) lines.push(setLine("create", table, set))
  for (const chain of changes.addChains) lines.push(...chainLines("create", table, chain))
  lines.push(...elementLines("delete", table, changes.deleteElements))
  // `add`, not `create`, for a key deleted above and for interval sets: nft 1.0.6 and the
  // kernel refuse `create` for those inside one transaction (File exists). The mock still
  // refuses a key that is there already; the agent never adds one.
  const deleted = new Set(changes.deleteElements.map((key) => `${key.set} ${key.key}`))
  const interval = new Set(skeleton.sets.filter((set) => set.interval === true).map((set) => set.name))
  const plainAdd = (e: NftElement) => deleted.has(`${e.set} ${e.key}`) || interval.has(e.set)
  lines.push(...elementLines("add", table, changes.addElements.filter(plainAdd)))
  lines.push(...elementLines("create", table, changes.addElements.filter((e) => !plainAdd(e))))
  for (const chain of changes.deleteChains) lines.push(`delete chain ${where(table)} ${chain}`)
  for (const set of changes.deleteSets) lines.push(`delete set ${where(table)} ${set}`)
  if (lines.length > 0) runNft(netns, "changeNftTable", lines.join("\n"))
}

/**
 * `addNftElements`: all or nothing, in one transaction; AlreadyExists when a key is there
 * already, NotFound when the table or a set is missing.
 */
export const addElements = (netns: string, table: NftTable, elements: ReadonlyArray<NftElement>): void => {
  checkElements("addNftElements", table, elements)
  if (elements.length === 0) return
  if (!netlinkElements.addElements(netns, "addNftElements", table, elements)) viaLibnftables.addElements(netns, table, elements)
}

/**
 * `getNftElements`: the elements among `keys` that exist; a missing table or set is NotFound.
 * A set left to libnftables is listed and its element found by key: nft 1.0.6's `get
 * element` in a single-field interval set answers with any element whose range holds the
 * key, and without its comment.
 */
export const getElements = (netns: string, table: NftTableRef, keys: ReadonlyArray<NftElementKey>): Array<NftElement> => {
  checkKeys("getNftElements", table, keys)
  const listings = new Map<string, Array<NftElement>>()
  return netlinkElements.getElements(netns, "getNftElements", table, keys, (key, set) => {
    const listing = listings.get(set.name) ?? listSet(netns, "getNftElements", table, set)
    listings.set(set.name, listing)
    const element = listing.find((candidate) => candidate.key === key.key)
    return element === undefined ? undefined : { ...element, set: key.set }
  })
}

/** One set's (or map's) elements through libnftables. */
const listSet = (netns: string, operation: string, table: NftTableRef, set: netlinkElements.SetDefinition): Array<NftElement> =>
  parseElements(runNft(netns, operation, `list ${set.data === undefined ? "set" : "map"} ${where(table)} ${set.name}`))

/** `deleteNftElements`: all or nothing; NotFound when one of them (or the table) is missing. */
export const deleteElements = (netns: string, table: NftTableRef, keys: ReadonlyArray<NftElementKey>): void => {
  checkKeys("deleteNftElements", table, keys)
  if (keys.length === 0) return
  if (!netlinkElements.deleteElements(netns, "deleteNftElements", table, keys)) viaLibnftables.deleteElements(netns, table, keys)
}

/** `listNftElements`: every element of the table, reading its sets only. */
export const listElements = (netns: string, table: NftTableRef): Array<NftElement> => {
  const problem = nftTableRefProblem(table)
  if (problem !== undefined) throw invalid("listNftElements", problem)
  return netlinkElements.listElements(netns, "listNftElements", table, (set) => listSet(netns, "listNftElements", table, set))
}

/** The kernel's answer for an element that is not there, as opposed to nft's for a missing table or set. */
const isMissingElement = (error: unknown): boolean =>
  error instanceof KernelCallFailed && error.error.reason === "NotFound" && /Could not process rule/.test(error.error.message)

/**
 * The element writes and lookups through libnftables, as tscni made them before nfnetlink:
 * for the sets the netlink code leaves to libnftables (single-field interval sets, types it
 * does not know), and for benchmarks comparing the two (tests/bench/elements.ts). They
 * check nothing themselves: the callers above have.
 */
export const viaLibnftables = {
  /** `create element`: nft answers a missing table or set from its cache, a key that is there from the kernel. */
  addElements: (netns: string, table: NftTableRef, elements: ReadonlyArray<NftElement>): void => {
    runNft(netns, "addNftElements", elementLines("create", table, elements).join("\n"))
  },
  /** one `get element` per key (a get of several fails whole when one is missing) */
  getElements: (netns: string, table: NftTableRef, keys: ReadonlyArray<NftElementKey>): Array<NftElement> => {
    const found: Array<NftElement> = []
    for (const key of keys) {
      let output: string
      try {
        output = runNft(netns, "getNftElements", `get element ${where(table)} ${key.set} { ${key.key} }`)
      } catch (error) {
        if (isMissingElement(error)) continue
        throw error
      }
      // the one element listed is the one asked for: keep the caller's spelling of its key
      const listed = parseElements(output).find((element) => element.set === key.set)
      if (listed !== undefined) found.push({ ...listed, key: key.key })
    }
    return found
  },
  deleteElements: (netns: string, table: NftTableRef, keys: ReadonlyArray<NftElementKey>): void => {
    try {
      runNft(netns, "deleteNftElements", elementLines("delete", table, keys).join("\n"))
    } catch (error) {
      // what nft says, from its cache, of an interval that is not in an interval set
      if (!(error instanceof KernelCallFailed && /element does not exist/.test(error.error.message))) throw error
      throw new KernelCallFailed(new BackendError({ operation: error.error.operation, reason: "NotFound", message: error.error.message }))
    }
  }
}

/** The rules of one chain, as nft prints them (without handles). */
export const listChainRules = (netns: string, table: NftTableRef, chain: string): Array<string> => {
  const problem = nftTableRefProblem(table) ?? (/^[A-Za-z][A-Za-z0-9_-]{0,63}$/.test(chain) ? undefined : `bad chain name '${chain}'`)
  if (problem !== undefined) throw invalid("listNftChainRules", problem)
  const rules: Array<string> = []
  let depth = 0
  for (const raw of runNft(netns, "listNftChainRules", `list chain ${where(table)} ${chain}`).split("\n")) {
    const line = withoutHandle(raw)
    if (line.endsWith("{")) depth++
    else if (line === "}") depth--
    else if (depth === 2 && line !== "" && !/^(type|policy) /.test(line)) rules.push(line)
  }
  return rules
}

export const deleteTable = (netns: string, table: NftTableRef): void => {
  const problem = nftTableRefProblem(table)
  if (problem !== undefined) throw invalid("deleteNftTable", problem)
  netlinkElements.forgetTable(netns, table)
  runNft(netns, "deleteNftTable", `delete table ${where(table)}`)
}

/** A listing line without its indentation and the ` # handle N` our nft context prints. */
const withoutHandle = (raw: string): string => raw.trim().replace(/ # handle \d+$/, "")

/**
 * Splits the `elements = { … }` lists of a listing into elements. Keys and values never
 * hold a comma, a brace or ` : ` (IPv6 addresses and MACs hold colons without spaces), and
 * comments are restricted to characters without quotes or commas.
 */
export const parseElements = (listing: string): Array<NftElement> => {
  const elements: Array<NftElement> = []
  let set: string | undefined
  let collecting: string | undefined
  for (const raw of listing.split("\n")) {
    const line = withoutHandle(raw)
    const header = /^(?:set|map) (\S+) \{$/.exec(line)
    if (header) {
      set = header[1]
      continue
    }
    if (set === undefined) continue
    if (collecting === undefined && line.startsWith("elements = {")) collecting = ""
    if (collecting === undefined) {
      if (line === "}") set = undefined
      continue
    }
    collecting += ` ${line.startsWith("elements = {") ? line.slice("elements = {".length) : line}`
    if (!collecting.trimEnd().endsWith("}")) continue
    const body = collecting.trimEnd().slice(0, -1)
    collecting = undefined
    for (const text of body.split(",").map((part) => part.trim()).filter((part) => part !== "")) {
      const separator = text.indexOf(" : ")
      const left = separator < 0 ? text : text.slice(0, separator)
      const comment = / comment "([^"]*)"$/.exec(left)
      elements.push({
        set,
        key: comment ? left.slice(0, comment.index) : left,
        ...(separator < 0 ? {} : { value: text.slice(separator + 3) }),
        comment: comment?.[1] ?? ""
      })
    }
  }
  return elements
}

// ---- table names: a netlink dump of NFT_MSG_GETTABLE (names only, never rules) ----

const NFNL_SUBSYS_NFTABLES = 10
const NFT_MSG_NEWTABLE = 0
const NFT_MSG_GETTABLE = 1
const NFTA_TABLE_NAME = 1
const NFGENMSG_LENGTH = 4
/** nfgen_family values (NFPROTO_*) of the families tscni uses */
const FAMILIES: Readonly<Record<number, NftTableRef["family"]>> = { 1: "inet", 2: "ip", 5: "netdev", 7: "bridge", 10: "ip6" }

/** Every table (of the families tscni uses) whose name starts with `prefix`. */
export const listTables = (netns: string, prefix: string): Array<NftTableRef> => {
  const type = (message: number) => (NFNL_SUBSYS_NFTABLES << 8) | message
  const tables: Array<NftTableRef> = []
  for (const message of netfilterSocket(netns).dump("listNftTables", type(NFT_MSG_GETTABLE), Uint8Array.of(0, 0, 0, 0))) {
    if (message.type !== type(NFT_MSG_NEWTABLE)) continue
    const family = FAMILIES[message.payload[0]!]
    const name = attrString(decodeAttributes(message.payload.subarray(NFGENMSG_LENGTH)), NFTA_TABLE_NAME)
    if (family !== undefined && name !== undefined && name.startsWith(prefix)) tables.push({ family, name })
  }
  return tables
}
