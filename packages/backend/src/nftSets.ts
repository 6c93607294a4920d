/**
 * Keyed nftables state: a table of tscni's holds a fixed skeleton (named sets and maps, and
 * chains whose rules only look things up in them), and everything per pod is an element of
 * one of those sets, added and removed by its key. Nothing per pod is a rule, so no
 * operation on a pod ever lists a ruleset: its cost does not depend on the pods of the node
 * or on anyone else's tables.
 *
 * Keys and values are written in nft's own element syntax, in the canonical form nft prints
 * them back in (so what a listing returns compares equal to what was added). Both backends
 * refuse what is not canonical, before anything is sent, with the same reason.
 */
import { Schema } from "effect"
import { formatIp, parseIp } from "@tscni/ip"
import { FilterFamily, FilterRule } from "./model.ts"
import { RULE_COMMENT } from "./iptables.ts"

/** Where a keyed table lives: its family and name. */
export const NftTableRef = Schema.Struct({ family: FilterFamily, name: Schema.String })
export type NftTableRef = typeof NftTableRef.Type

/**
 * A named set (or, with `map`, a map) of a keyed table. `type` is the key's nft type, a
 * concatenation with ` . ` (`ipv4_addr . inet_proto . inet_service`); `map` the value's
 * type (or `verdict`); `interval` lets key parts be prefixes (`10.1.0.0/16`).
 */
export const NftSet = Schema.Struct({
  name: Schema.String,
  type: Schema.String,
  map: Schema.optionalKey(Schema.String),
  interval: Schema.optionalKey(Schema.Boolean)
})
export type NftSet = typeof NftSet.Type

/** A chain of a keyed table with its fixed rules (one statement each, in order). */
export const NftChain = Schema.Struct({
  name: Schema.String,
  base: FilterRule.fields.baseChain,
  rules: Schema.Array(Schema.String)
})
export type NftChain = typeof NftChain.Type

/** A keyed table's skeleton: created whole, in one transaction, by the first pod that needs it. */
export const NftTable = Schema.Struct({
  family: FilterFamily,
  name: Schema.String,
  sets: Schema.Array(NftSet),
  chains: Schema.Array(NftChain)
})
export type NftTable = typeof NftTable.Type

/**
 * A change to a keyed table whose skeleton grows and shrinks (the policy table: chains and
 * sets per policy rule), made in one transaction in this order: new sets, new chains,
 * deleted elements, added elements, deleted chains, deleted sets — so a new chain's sets
 * exist before its rules, a map element may move to a new chain, and nothing is deleted
 * while a rule or element still refers to it. `sets` are the specs of the sets elements
 * are added to (their types check the keys).
 */
export interface NftChanges {
  readonly addSets: ReadonlyArray<NftSet>
  readonly addChains: ReadonlyArray<NftChain>
  readonly deleteElements: ReadonlyArray<NftElementKey>
  readonly addElements: ReadonlyArray<NftElement>
  readonly deleteChains: ReadonlyArray<string>
  readonly deleteSets: ReadonlyArray<string>
  readonly sets: ReadonlyArray<NftSet>
}

/** An element's address: its set and its key. */
export const NftElementKey = Schema.Struct({ set: Schema.String, key: Schema.String })
export type NftElementKey = typeof NftElementKey.Type

/** One element: its key, its value when the set is a map, and its owner as a comment. */
export const NftElement = Schema.Struct({
  set: Schema.String,
  key: Schema.String,
  value: Schema.optionalKey(Schema.String),
  comment: Schema.String
})
export type NftElement = typeof NftElement.Type

const NAME = /^[A-Za-z][A-Za-z0-9_-]{0,63}$/
const IFNAME = /^"[^\s"/{};\\:]{1,15}"$/
const MAC = /^[0-9a-f]{2}(:[0-9a-f]{2}){5}$/
const PROTOCOLS: ReadonlySet<string> = new Set(["tcp", "udp", "sctp", "icmp", "icmpv6"])
const VERDICT = /^(accept|drop|continue|return|(jump|goto) [A-Za-z][A-Za-z0-9_-]{0,63})$/

/** The nft data types a key or value part may have, each with its canonical-form check. */
const TYPES: Readonly<Record<string, (text: string, interval: boolean) => boolean>> = {
  ipv4_addr: (text, interval) => canonicalAddress(text, 4, interval),
  ipv6_addr: (text, interval) => canonicalAddress(text, 6, interval),
  inet_proto: (text) => PROTOCOLS.has(text),
  inet_service: (text, interval) => {
    const port = (part: string) => /^(0|[1-9][0-9]{0,4})$/.test(part) && Number(part) <= 65535
    const dash = text.indexOf("-")
    // a port range (`80-90`), as nft prints one, in interval sets only
    return dash < 0 ? port(text) : interval && port(text.slice(0, dash)) && port(text.slice(dash + 1)) && Number(text.slice(0, dash)) < Number(text.slice(dash + 1))
  },
  ifname: (text) => IFNAME.test(text),
  ether_addr: (text) => MAC.test(text),
  mark: (text) => /^0x[0-9a-f]{8}$/.test(text)
}

/**
 * An address as nft prints it: canonical text, and in an interval set optionally a network
 * prefix shorter than the address (`10.1.0.0/16`; a full-length prefix prints without it).
 */
const canonicalAddress = (text: string, family: 4 | 6, interval: boolean): boolean => {
  const slash = text.indexOf("/")
  const address = slash < 0 ? text : text.slice(0, slash)
  const ip = parseIp(address)
  if (ip?.family !== family || formatIp(ip) !== address) return false
  if (slash < 0) return true
  if (!interval || !/^[0-9]{1,3}$/.test(text.slice(slash + 1))) return false
  const prefix = Number(text.slice(slash + 1))
  const width = family === 4 ? 32 : 128
  if (prefix >= width) return false
  const hostBits = BigInt(width - prefix)
  return (ip.value & ((1n << hostBits) - 1n)) === 0n
}

/** Why a set or map type cannot be used, or undefined. */
const typeProblem = (type: string, what: string, allowVerdict: boolean): string | undefined => {
  if (allowVerdict && type === "verdict") return undefined
  const parts = type.split(" . ")
  const unknown = parts.find((part) => TYPES[part] === undefined)
  return unknown === undefined ? undefined : `${what}: unknown type '${unknown}' in '${type}'`
}

/** Why `text` is not a canonical value of `type` (a concatenation), or undefined. */
const dataProblem = (type: string, text: string, interval: boolean, what: string): string | undefined => {
  if (type === "verdict") return VERDICT.test(text) ? undefined : `${what}: '${text}' is not a verdict`
  const types = type.split(" . ")
  const parts = text.split(" . ")
  if (parts.length !== types.length) return `${what}: '${text}' does not have the ${types.length} part(s) of '${type}'`
  for (const [i, part] of parts.entries()) {
    if (!TYPES[types[i]!]!(part, interval)) return `${what}: '${part}' is not a canonical ${types[i]}`
  }
  return undefined
}

/** Why a rule of a skeleton cannot be written into a script, or undefined. */
const ruleProblem = (rule: string): string | undefined =>
  rule.trim() === "" || /[;\n\r]/.test(rule) ? `a rule must be one statement: '${rule}'` : undefined

/** Why a table skeleton would be refused, or undefined (names, types, base chains, rules). */
export const nftTableProblem = (table: NftTable): string | undefined => {
  if (!NAME.test(table.name)) return `bad table name '${table.name}'`
  const names = new Set<string>()
  for (const set of table.sets) {
    if (!NAME.test(set.name)) return `bad set name '${set.name}'`
    if (names.has(set.name)) return `set ${set.name} declared twice`
    names.add(set.name)
    const problem = typeProblem(set.type, `set ${set.name}`, false) ?? (set.map === undefined ? undefined : typeProblem(set.map, `map ${set.name}`, true))
    if (problem !== undefined) return problem
  }
  const chains = new Set<string>()
  for (const chain of table.chains) {
    if (!NAME.test(chain.name)) return `bad chain name '${chain.name}'`
    if (chains.has(chain.name)) return `chain ${chain.name} declared twice`
    chains.add(chain.name)
    for (const rule of chain.rules) {
      const problem = ruleProblem(rule)
      if (problem !== undefined) return problem
    }
  }
  return undefined
}

/** Why a table reference is not one of tscni's names, or undefined. */
export const nftTableRefProblem = (table: NftTableRef): string | undefined =>
  NAME.test(table.name) ? undefined : `bad table name '${table.name}'`

/**
 * Why an element does not fit its set (key and value canonical values of their types, a
 * value exactly for a map, an owner comment), or undefined. `set` undefined: no such set.
 */
export const nftElementProblem = (set: NftSet | undefined, element: NftElementKey & { readonly value?: string; readonly comment?: string }): string | undefined => {
  if (set === undefined) return undefined // NotFound, not Invalid: the caller says so
  const what = `element of ${set.name}`
  const keyProblem = dataProblem(set.type, element.key, set.interval === true, what)
  if (keyProblem !== undefined) return keyProblem
  if (element.comment !== undefined && !RULE_COMMENT.test(element.comment)) return `${what}: bad comment '${element.comment}'`
  if (element.comment === undefined) return undefined // a key only (get, delete)
  if (set.map === undefined) return element.value === undefined ? undefined : `${what}: ${set.name} is a set, it takes no value`
  if (element.value === undefined) return `${what}: ${set.name} is a map, a value is needed`
  return dataProblem(set.map, element.value, false, what)
}

/**
 * Why a key (or set name) cannot be written into a get or delete script, or undefined:
 * those take keys as a listing printed them, for sets whose types the caller may not know
 * (another skeleton's), so only what could break out of the element list is refused.
 */
export const nftKeyTextProblem = (element: NftElementKey): string | undefined =>
  !NAME.test(element.set)
    ? `bad set name '${element.set}'`
    : /^[A-Za-z0-9_.:/" -]{1,256}$/.test(element.key) && element.key.trim() !== ""
    ? undefined
    : `bad key '${element.key}'`

/** Why a key alone is not canonical for `set`, or undefined. */
export const nftKeyProblem = (set: NftSet, key: string): string | undefined =>
  dataProblem(set.type, key, set.interval === true, `key of ${set.name}`)
