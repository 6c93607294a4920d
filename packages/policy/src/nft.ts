/**
 * The node's enforcement as one nftables table of its own, `inet tscni-policy`, rendered
 * from the compiled model for the pods of this node:
 *
 * - chain `forward` (hook forward): replies of allowed connections pass
 *   (`ct state established,related accept`); then a packet from a local pod some egress
 *   policy selects jumps, through the verdict maps `egress4`/`egress6` keyed by the pod's
 *   address, to its egress chain; then one to such a pod, through `ingress4`/`ingress6`, to
 *   its ingress chain. Traffic between two pods of one bridge is seen here too
 *   (bridge-nf-call-iptables, as every Kubernetes node has it); traffic from or to the
 *   node itself never passes `forward`, so kubelet's probes are always allowed.
 * - a pod's chain (`in-…`, `eg-…`, named by the hash of its rules, so pods selected by the
 *   same policies share one): a `return` per admitting rule, then a reject.
 * - per policy rule, interval sets of its peers' addresses (pods and IP blocks, excepts cut
 *   out: `r…a4`, `r…a6`) and of its numeric ports (`r…p`, protocol . port range); per named
 *   port, the addresses of the pods declaring it (`n…4`: address . protocol . port).
 *
 * A pod or label change therefore changes set and map elements; only a new combination of
 * policies adds a chain. The per-packet cost is a map lookup plus the rules of the policies
 * that select the pod, whatever the number of pods and of other policies.
 */
import { createHash } from "node:crypto"
import type { NftChain, NftChanges, NftElement, NftElementKey, NftSet, NftTable } from "@tscni/backend"
import type { IpFamily } from "@tscni/ip"
import type { CompiledPolicy, CompiledRule, Direction, Model } from "./model.ts"
import type { Pod, Protocol } from "./objects.ts"
import { toCidrs } from "./ranges.ts"

export const POLICY_TABLE = { family: "inet", name: "tscni-policy" } as const
/** every element's owner comment */
const OWNER = "tscni-policy"

/** The table as wanted: each set's spec and elements (key → value or undefined), each chain's rules. */
export interface PolicyRuleset {
  readonly sets: ReadonlyMap<string, { readonly spec: NftSet; readonly elements: ReadonlyMap<string, string | undefined> }>
  readonly chains: ReadonlyMap<string, NftChain>
}

const hash = (text: string, length: number): string => createHash("sha256").update(text).digest("hex").slice(0, length)

const DISPATCH: ReadonlyArray<NftSet> = [
  { name: "egress4", type: "ipv4_addr", map: "verdict" },
  { name: "egress6", type: "ipv6_addr", map: "verdict" },
  { name: "ingress4", type: "ipv4_addr", map: "verdict" },
  { name: "ingress6", type: "ipv6_addr", map: "verdict" }
]

const FORWARD: NftChain = {
  name: "forward",
  base: { type: "filter", hook: "forward", priority: 0 },
  rules: [
    "ct state established,related accept",
    "ip saddr vmap @egress4",
    "ip6 saddr vmap @egress6",
    "ip daddr vmap @ingress4",
    "ip6 daddr vmap @ingress6"
  ]
}

/** Refused, not dropped: a client learns at once (TCP reset, else ICMP administratively prohibited). */
const DENY = ["meta l4proto tcp reject with tcp reset", "reject with icmpx admin-prohibited"]

const PROTO: Record<Protocol, string> = { TCP: "tcp", UDP: "udp", SCTP: "sctp" }
const ADDR: Record<IpFamily, { readonly type: string; readonly match: string }> = {
  4: { type: "ipv4_addr", match: "ip" },
  6: { type: "ipv6_addr", match: "ip6" }
}

/** The base name of a rule's sets. */
const ruleBase = (policy: CompiledPolicy, direction: Direction, rule: CompiledRule): string => `r${hash(`${policy.key}|${direction}|${rule.index}`, 12)}`
const namedBase = (name: string, protocol: Protocol): string => `n${hash(`${name}|${protocol}`, 12)}`

class Builder {
  readonly sets = new Map<string, { spec: NftSet; elements: Map<string, string | undefined> }>()
  readonly chains = new Map<string, NftChain>()
  /** named-port sets no pod declares (never made: an empty set admits nothing, so no rule names it) */
  readonly emptyNamedPorts = new Set<string>()

  set(spec: NftSet): Map<string, string | undefined> {
    const existing = this.sets.get(spec.name)
    if (existing !== undefined) return existing.elements
    const elements = new Map<string, string | undefined>()
    this.sets.set(spec.name, { spec, elements })
    return elements
  }
}

/** The rules (as nft statements) by which a rule of `policy` admits a packet, its sets filled in. */
const ruleStatements = (out: Builder, model: Model, policy: CompiledPolicy, direction: Direction, rule: CompiledRule): Array<string> => {
  const base = ruleBase(policy, direction, rule)
  // the peer's address: the source for ingress, the destination for egress
  const peerField = direction === "ingress" ? "saddr" : "daddr"
  const addressClauses: Array<{ readonly family: IpFamily | undefined; readonly text: string }> = []
  if (rule.peers === "all") addressClauses.push({ family: undefined, text: "" })
  else {
    for (const family of [4, 6] as const) {
      const cidrs = toCidrs(family, rule.peers.ranges[family])
      if (cidrs.length === 0) continue
      const elements = out.set({ name: `${base}a${family}`, type: ADDR[family].type, interval: true })
      for (const cidr of cidrs) elements.set(cidr, undefined)
      addressClauses.push({ family, text: `${ADDR[family].match} ${peerField} @${base}a${family}` })
    }
  }
  const portClauses: Array<{ readonly family: IpFamily | undefined; readonly text: string }> = []
  if (rule.ports === "all") portClauses.push({ family: undefined, text: "" })
  else {
    const numbers = rule.ports.filter((spec) => spec.kind === "numbers")
    if (numbers.length > 0) {
      const elements = out.set({ name: `${base}p`, type: "inet_proto . inet_service", interval: true })
      for (const spec of numbers) elements.set(`${PROTO[spec.protocol]} . ${spec.from === spec.to ? spec.from : `${spec.from}-${spec.to}`}`, undefined)
      portClauses.push({ family: undefined, text: `meta l4proto . th dport @${base}p` })
    }
    const named = new Map<string, { readonly name: string; readonly protocol: Protocol }>()
    for (const spec of rule.ports) if (spec.kind === "named") named.set(`${spec.name}|${spec.protocol}`, spec)
    for (const { name, protocol } of named.values()) {
      for (const family of [4, 6] as const) {
        const setName = `${namedBase(name, protocol)}${family}`
        if (!fillNamedPort(out, model, setName, family, name, protocol)) continue
        portClauses.push({ family, text: `${ADDR[family].match} daddr . meta l4proto . th dport @${setName}` })
      }
    }
  }
  const statements: Array<string> = []
  for (const address of addressClauses) {
    for (const port of portClauses) {
      if (address.family !== undefined && port.family !== undefined && address.family !== port.family) continue
      statements.push(`${address.text} ${port.text} return`.replace(/\s+/g, " ").trim())
    }
  }
  return statements
}

/** The named-port set: every pod address declaring `name` over `protocol`; false when none does (the set would be empty). */
const fillNamedPort = (out: Builder, model: Model, setName: string, family: IpFamily, name: string, protocol: Protocol): boolean => {
  // one set per name, protocol and family, shared by every rule naming it: filled once
  const filled = out.sets.get(setName)
  if (filled !== undefined) return filled.elements.size > 0
  if (out.emptyNamedPorts.has(setName)) return false
  const entries: Array<string> = []
  for (const pod of model.world.pods.values()) {
    const declared = pod.ports.find((p) => p.name === name && p.protocol === protocol)
    if (declared === undefined) continue
    for (const ip of pod.ips) if (ip.includes(":") === (family === 6)) entries.push(`${ip} . ${PROTO[protocol]} . ${declared.port}`)
  }
  if (entries.length === 0) {
    out.emptyNamedPorts.add(setName)
    return false
  }
  const elements = out.set({ name: setName, type: `${ADDR[family].type} . inet_proto . inet_service` })
  for (const entry of entries) elements.set(entry, undefined)
  return true
}

/** Renders the table for the pods `isLocal` says are on this node. */
export const renderRuleset = (model: Model, isLocal: (pod: Pod) => boolean): PolicyRuleset => {
  const out = new Builder()
  for (const spec of DISPATCH) out.set(spec)
  out.chains.set(FORWARD.name, FORWARD)
  const statementsOf = new Map<string, ReadonlyArray<string>>()
  for (const direction of ["egress", "ingress"] as const) {
    for (const [key, policies] of model.selecting[direction]) {
      const pod = model.world.pods.get(key)
      if (pod === undefined || pod.ips.length === 0 || !isLocal(pod)) continue
      const rules: Array<string> = []
      for (const policy of policies) {
        for (const rule of policy[direction] ?? []) {
          const id = `${policy.key}|${direction}|${rule.index}`
          let statements = statementsOf.get(id)
          if (statements === undefined) {
            statements = ruleStatements(out, model, policy, direction, rule)
            statementsOf.set(id, statements)
          }
          rules.push(...statements)
        }
      }
      rules.push(...DENY)
      const name = `${direction === "ingress" ? "in" : "eg"}-${hash(rules.join("\n"), 16)}`
      out.chains.set(name, { name, rules })
      for (const ip of pod.ips) {
        const family = ip.includes(":") ? 6 : 4
        out.set(DISPATCH.find((s) => s.name === `${direction}${family}`)!).set(ip, `jump ${name}`)
      }
    }
  }
  return out
}

/** The whole table and its elements, for replaceNftTable (the agent's first write after it starts). */
export const tableOf = (ruleset: PolicyRuleset): { readonly table: NftTable; readonly elements: ReadonlyArray<NftElement> } => ({
  table: { ...POLICY_TABLE, sets: [...ruleset.sets.values()].map((s) => s.spec), chains: [...ruleset.chains.values()] },
  elements: [...ruleset.sets.values()].flatMap(({ spec, elements }) =>
    [...elements].map(([key, value]) => ({ set: spec.name, key, ...(value !== undefined ? { value } : {}), comment: OWNER }))
  )
})

/** The smallest change from `applied` to `wanted` (chains are named by content, so a changed chain is a new one). */
export const diffRulesets = (applied: PolicyRuleset, wanted: PolicyRuleset): NftChanges => {
  const addSets = [...wanted.sets.values()].filter(({ spec }) => !applied.sets.has(spec.name)).map(({ spec }) => spec)
  const deleteSets = [...applied.sets.keys()].filter((name) => !wanted.sets.has(name))
  const addChains = [...wanted.chains.values()].filter((chain) => !applied.chains.has(chain.name))
  const deleteChains = [...applied.chains.keys()].filter((name) => !wanted.chains.has(name))
  const addElements: Array<NftElement> = []
  const deleteElements: Array<NftElementKey> = []
  const touched: Array<NftSet> = []
  for (const { spec, elements } of wanted.sets.values()) {
    const before = applied.sets.get(spec.name)?.elements ?? new Map<string, string | undefined>()
    let changed = false
    for (const [key, value] of elements) {
      if (before.has(key) && before.get(key) === value) continue
      if (before.has(key)) deleteElements.push({ set: spec.name, key })
      addElements.push({ set: spec.name, key, ...(value !== undefined ? { value } : {}), comment: OWNER })
      changed = true
    }
    for (const key of before.keys()) {
      if (!elements.has(key)) deleteElements.push({ set: spec.name, key })
    }
    if (changed && applied.sets.has(spec.name)) touched.push(spec)
  }
  return { addSets, addChains, deleteElements, addElements, deleteChains, deleteSets, sets: touched }
}

/** Whether a change changes nothing. */
export const isEmptyChange = (changes: NftChanges): boolean =>
  changes.addSets.length + changes.addChains.length + changes.deleteElements.length + changes.addElements.length + changes.deleteChains.length + changes.deleteSets.length === 0
