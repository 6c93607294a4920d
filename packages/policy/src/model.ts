/**
 * The compiled model: what the datastore says (namespaces, pods, policies) turned into, per
 * policy and rule, the concrete addresses and ports it admits. The agent renders nftables
 * from it (nft.ts) and `cni policy explain` answers from it (explain.ts), so what is
 * explained is what is enforced.
 */
import type { IpFamily } from "@tscni/ip"
import { implicitNamespace, type Namespace, type Pod, type Policy, type PortSpec, type Protocol, type Rule } from "./objects.ts"
import { inRanges, ipValue, type Range, rangeOfCidr, subtract, union } from "./ranges.ts"
import { matches } from "./selectors.ts"

/** What a policy decision is made over. */
export interface World {
  readonly namespaces: ReadonlyMap<string, Namespace>
  /** by `namespace/name` */
  readonly pods: ReadonlyMap<string, Pod>
  /** by `namespace/name` */
  readonly policies: ReadonlyMap<string, Policy>
}

export const podKey = (pod: { readonly namespace: string; readonly name: string }): string => `${pod.namespace}/${pod.name}`

/** A rule's peers as addresses: every address of matching pods and of IP blocks (excepts cut out). */
export interface CompiledPeers {
  readonly pods: ReadonlyArray<string>
  readonly ranges: Readonly<Record<IpFamily, ReadonlyArray<Range>>>
}

export interface CompiledRule {
  readonly index: number
  /** "all": the rule names no peers */
  readonly peers: "all" | CompiledPeers
  /** "all": the rule names no ports (every protocol, ICMP included) */
  readonly ports: "all" | ReadonlyArray<PortSpec>
}

export interface CompiledPolicy {
  readonly key: string
  readonly namespace: string
  readonly name: string
  /** the pods it selects, by key */
  readonly selected: ReadonlyArray<string>
  readonly ingress: ReadonlyArray<CompiledRule> | undefined
  readonly egress: ReadonlyArray<CompiledRule> | undefined
}

export type Direction = "ingress" | "egress"

export interface Model {
  readonly world: World
  readonly policies: ReadonlyMap<string, CompiledPolicy>
  /** per pod key: the policies of each direction that select it (sorted by key); absent: unrestricted */
  readonly selecting: Readonly<Record<Direction, ReadonlyMap<string, ReadonlyArray<CompiledPolicy>>>>
}

const namespaceOf = (world: World, name: string): Namespace => world.namespaces.get(name) ?? implicitNamespace(name)

/** Every pod address of `pods`, as single-address ranges per family. */
const addressRanges = (world: World, pods: ReadonlyArray<string>, extra: Record<IpFamily, Array<Range>>): Record<IpFamily, ReadonlyArray<Range>> => {
  const out: Record<IpFamily, Array<Range>> = { 4: [...extra[4]], 6: [...extra[6]] }
  for (const key of pods) {
    for (const text of world.pods.get(key)?.ips ?? []) {
      const ip = ipValue(text)
      if (ip !== undefined) out[ip.family].push({ from: ip.value, to: ip.value })
    }
  }
  return { 4: union(out[4]), 6: union(out[6]) }
}

/** The world's pods by namespace, and each namespace's labels: what selectors are matched against. */
interface Index {
  readonly podsIn: ReadonlyMap<string, ReadonlyArray<Pod>>
  readonly namespaces: ReadonlyArray<Namespace>
}

const indexOf = (world: World): Index => {
  const podsIn = new Map<string, Array<Pod>>()
  for (const pod of world.pods.values()) podsIn.set(pod.namespace, [...(podsIn.get(pod.namespace) ?? []), pod])
  // a namespace with pods but no object still has its implied name label
  const names = new Set([...world.namespaces.keys(), ...podsIn.keys()])
  return { podsIn, namespaces: [...names].map((name) => namespaceOf(world, name)) }
}

/** A rule's peers as addresses (pod selectors matched namespace by namespace). */
const compilePeers = (world: World, index: Index, policy: Policy, spec: Rule): CompiledPeers => {
  const pods = new Set<string>()
  const blocks: Record<IpFamily, Array<Range>> = { 4: [], 6: [] }
  for (const peer of spec.peers) {
    if (peer.kind === "ipBlock") {
      blocks[peer.cidr.ip.family].push(...subtract([rangeOfCidr(peer.cidr)], peer.except.map(rangeOfCidr)))
      continue
    }
    const namespaces = peer.namespaceSelector === undefined
      ? [policy.namespace]
      : index.namespaces.filter((ns) => matches(peer.namespaceSelector!, ns.labels)).map((ns) => ns.name)
    for (const namespace of namespaces) {
      for (const pod of index.podsIn.get(namespace) ?? []) {
        if (peer.podSelector === undefined || matches(peer.podSelector, pod.labels)) pods.add(podKey(pod))
      }
    }
  }
  const sorted = [...pods].sort()
  return { pods: sorted, ranges: addressRanges(world, sorted, blocks) }
}

/**
 * A rule, its peers worked out on first use: the agent renders only the rules of policies
 * that select a pod of its node, so the others' peers are never computed there.
 */
const compileRule = (world: World, index: Index, policy: Policy, spec: Rule, position: number): CompiledRule => {
  let peers: CompiledRule["peers"] | undefined = spec.peers.length === 0 ? "all" : undefined
  return {
    index: position,
    get peers() {
      peers ??= compilePeers(world, index, policy, spec)
      return peers
    },
    ports: spec.ports.length === 0 ? "all" : spec.ports
  }
}

/** Compiles the world: selections, peers and ports of every policy. */
export const compile = (world: World): Model => {
  const index = indexOf(world)
  const policies = new Map<string, CompiledPolicy>()
  const selecting: Record<Direction, Map<string, Array<CompiledPolicy>>> = { ingress: new Map(), egress: new Map() }
  for (const key of [...world.policies.keys()].sort()) {
    const policy = world.policies.get(key)!
    const selected = (index.podsIn.get(policy.namespace) ?? [])
      .filter((pod) => matches(policy.podSelector, pod.labels))
      .map(podKey)
      .sort()
    const compiled: CompiledPolicy = {
      key,
      namespace: policy.namespace,
      name: policy.name,
      selected,
      ingress: policy.ingress?.map((rule, i) => compileRule(world, index, policy, rule, i)),
      egress: policy.egress?.map((rule, i) => compileRule(world, index, policy, rule, i))
    }
    policies.set(key, compiled)
    for (const direction of ["ingress", "egress"] as const) {
      if (compiled[direction] === undefined) continue
      for (const pod of selected) {
        const list = selecting[direction].get(pod)
        if (list === undefined) selecting[direction].set(pod, [compiled])
        else list.push(compiled)
      }
    }
  }
  return { world, policies, selecting }
}

/** Whether the peer address `ip` is one of the rule's peers. */
export const peerMatches = (rule: CompiledRule, ip: string): boolean => {
  if (rule.peers === "all") return true
  const value = ipValue(ip)
  return value !== undefined && inRanges(rule.peers.ranges[value.family], value.value)
}

/**
 * Whether a packet to `port`/`protocol` of `destination` (a pod, for named ports; undefined
 * for an address outside the pods) is in the rule's ports. `port` undefined: not TCP/UDP/SCTP.
 */
export const portMatches = (rule: CompiledRule, destination: Pod | undefined, protocol: Protocol | undefined, port: number | undefined): boolean => {
  if (rule.ports === "all") return true
  if (protocol === undefined || port === undefined) return false
  return rule.ports.some((spec) =>
    spec.protocol === protocol &&
    (spec.kind === "numbers"
      ? port >= spec.from && port <= spec.to
      : (destination?.ports ?? []).some((declared) => declared.name === spec.name && declared.protocol === protocol && declared.port === port))
  )
}
