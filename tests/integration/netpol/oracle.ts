/**
 * A reference model of Kubernetes `networking.k8s.io/v1` NetworkPolicy semantics, written
 * from the Kubernetes documentation (concepts page and the API reference) and nothing else:
 * it imports no code, neither tscni's nor anyone's, so a truth table computed here is an
 * independent expectation for whatever enforces the policies.
 *
 * The model: a connection src → dst on (port, protocol) is allowed when egress is allowed
 * at src AND ingress is allowed at dst. A pod not selected by any policy of a direction is
 * unrestricted in that direction; a selected pod is allowed what at least one rule of the
 * selecting policies (of that direction) allows. Traffic of a pod to itself is allowed.
 *
 * Objects Kubernetes would reject (a peer with no field, an ipBlock combined with a
 * selector, endPort without a numeric port, an unknown selector operator) make it throw,
 * rather than guess at a meaning no API server would accept.
 */

/** A namespace; the label kubernetes.io/metadata.name=<name> is added by the oracle. */
export interface OracleNamespace {
  name: string
  labels: Record<string, string>
}

/** L4 protocols a NetworkPolicyPort may name. */
export type Protocol = "TCP" | "UDP" | "SCTP"

/** A pod as the oracle needs it: identity, labels, addresses and declared container ports. */
export interface OraclePod {
  namespace: string
  name: string
  labels: Record<string, string>
  ips: string[]
  ports: Array<{ name?: string; port: number; protocol: Protocol }>
  node: string
}

/** Everything the decision depends on; `policies` are NetworkPolicy objects as Kubernetes JSON. */
export interface OracleWorld {
  namespaces: OracleNamespace[]
  pods: OraclePod[]
  policies: unknown[]
}

/** Restricts which addresses ipBlock peers are matched against (a dual-stack pod connects over one family). */
export interface OracleOptions {
  /** 4 or 6: consider only the pods' addresses of this family; by default any address of a pod counts */
  family?: 4 | 6
}

// ---------------------------------------------------------------------------------------
// JSON access (the policies arrive as untyped Kubernetes JSON)

type Json = Record<string, unknown>

const isObject = (value: unknown): value is Json => typeof value === "object" && value !== null && !Array.isArray(value)

const field = (value: unknown, key: string): unknown => (isObject(value) ? value[key] : undefined)

const list = (value: unknown): unknown[] | undefined => (Array.isArray(value) ? value : undefined)

// ---------------------------------------------------------------------------------------
// label selectors

const NAME_LABEL = "kubernetes.io/metadata.name"

/**
 * metav1.LabelSelector: every matchLabels pair AND every matchExpressions requirement.
 * An empty selector `{}` selects everything. NotIn and DoesNotExist hold when the key is absent.
 */
const selectorMatches = (selector: unknown, labels: Record<string, string>): boolean => {
  if (selector === undefined || selector === null) return true
  if (!isObject(selector)) throw new TypeError(`invalid label selector ${JSON.stringify(selector)}`)
  const matchLabels = field(selector, "matchLabels")
  if (matchLabels !== undefined && matchLabels !== null) {
    if (!isObject(matchLabels)) throw new TypeError(`invalid matchLabels ${JSON.stringify(matchLabels)}`)
    for (const [key, value] of Object.entries(matchLabels)) {
      if (!Object.hasOwn(labels, key) || labels[key] !== value) return false
    }
  }
  for (const requirement of list(field(selector, "matchExpressions")) ?? []) {
    const key = field(requirement, "key")
    const operator = field(requirement, "operator")
    const values = (list(field(requirement, "values")) ?? []).map(String)
    if (typeof key !== "string") throw new TypeError(`invalid matchExpressions entry ${JSON.stringify(requirement)}`)
    const present = Object.hasOwn(labels, key)
    const value = labels[key]
    switch (operator) {
      case "In":
        if (!present || value === undefined || !values.includes(value)) return false
        break
      case "NotIn":
        if (present && value !== undefined && values.includes(value)) return false
        break
      case "Exists":
        if (!present) return false
        break
      case "DoesNotExist":
        if (present) return false
        break
      default:
        throw new TypeError(`unknown label selector operator ${JSON.stringify(operator)}`)
    }
  }
  return true
}

const namespaceLabels = (world: OracleWorld, name: string): Record<string, string> => {
  const found = world.namespaces.find((ns) => ns.name === name)
  return { ...(found?.labels ?? {}), [NAME_LABEL]: name }
}

// ---------------------------------------------------------------------------------------
// addresses

interface Address {
  readonly family: 4 | 6
  readonly value: bigint
}

const parseIPv4 = (text: string): bigint | undefined => {
  const parts = text.split(".")
  if (parts.length !== 4) return undefined
  let value = 0n
  for (const part of parts) {
    if (!/^\d{1,3}$/.test(part) || Number(part) > 255) return undefined
    value = (value << 8n) | BigInt(Number(part))
  }
  return value
}

const parseIPv6 = (text: string): bigint | undefined => {
  let rest = text
  let tail: Array<number> = []
  // an embedded dotted quad (::ffff:10.0.0.1) supplies the last two groups
  const lastColon = rest.lastIndexOf(":")
  if (rest.slice(lastColon + 1).includes(".")) {
    const v4 = parseIPv4(rest.slice(lastColon + 1))
    if (v4 === undefined) return undefined
    tail = [Number(v4 >> 16n), Number(v4 & 0xffffn)]
    rest = rest.slice(0, lastColon + 1) + "0:0" // two placeholder groups, replaced below
  }
  const halves = rest.split("::")
  if (halves.length > 2) return undefined
  const groups = (half: string): Array<number> | undefined => {
    if (half === "") return []
    const out: Array<number> = []
    for (const group of half.split(":")) {
      if (!/^[0-9a-fA-F]{1,4}$/.test(group)) return undefined
      out.push(parseInt(group, 16))
    }
    return out
  }
  const head = groups(halves[0] ?? "")
  const back = halves.length === 2 ? groups(halves[1] ?? "") : []
  if (head === undefined || back === undefined) return undefined
  let all: Array<number>
  if (halves.length === 2) {
    const missing = 8 - head.length - back.length
    if (missing < 1) return undefined
    all = [...head, ...new Array<number>(missing).fill(0), ...back]
  } else {
    all = head
  }
  if (tail.length === 2) all = [...all.slice(0, -2), ...tail]
  if (all.length !== 8) return undefined
  return all.reduce((acc, group) => (acc << 16n) | BigInt(group), 0n)
}

const parseAddress = (text: string): Address | undefined => {
  const bare = text.split("%")[0] ?? text // a zone (fe80::1%eth0) does not matter here
  if (bare.includes(":")) {
    const value = parseIPv6(bare)
    return value === undefined ? undefined : { family: 6, value }
  }
  const value = parseIPv4(bare)
  return value === undefined ? undefined : { family: 4, value }
}

/** Whether `address` lies in `cidr` (host bits of the CIDR are ignored); families never mix. */
const inCidr = (address: Address, cidr: string): boolean => {
  const [base, lengthText] = cidr.split("/")
  const network = parseAddress(base ?? "")
  const bits = network?.family === 6 ? 128 : 32
  const length = lengthText === undefined ? bits : Number(lengthText)
  if (network === undefined || !Number.isInteger(length) || length < 0 || length > bits) {
    throw new TypeError(`invalid CIDR ${JSON.stringify(cidr)}`)
  }
  if (network.family !== address.family) return false
  const shift = BigInt(bits - length)
  return address.value >> shift === network.value >> shift
}

const podAddresses = (pod: OraclePod, options: OracleOptions): Array<Address> =>
  pod.ips
    .map((text) => {
      const address = parseAddress(text)
      if (address === undefined) throw new TypeError(`pod ${pod.namespace}/${pod.name} has an invalid IP ${JSON.stringify(text)}`)
      return address
    })
    .filter((address) => options.family === undefined || address.family === options.family)

/** ipBlock: some address of the pod is in `cidr` and in none of `except` (the except only narrows this block). */
const ipBlockMatches = (block: unknown, pod: OraclePod, options: OracleOptions): boolean => {
  const cidr = field(block, "cidr")
  if (typeof cidr !== "string") throw new TypeError(`ipBlock without a cidr: ${JSON.stringify(block)}`)
  const except = (list(field(block, "except")) ?? []).map(String)
  return podAddresses(pod, options).some((address) => inCidr(address, cidr) && !except.some((excluded) => inCidr(address, excluded)))
}

// ---------------------------------------------------------------------------------------
// peers and ports

/**
 * NetworkPolicyPeer, seen from a policy in `policyNamespace`: does it select `pod`?
 * podSelector alone: pods of the policy's namespace; namespaceSelector alone: every pod of
 * the matching namespaces; both: pods matching the podSelector in matching namespaces.
 */
const peerMatches = (world: OracleWorld, peer: unknown, policyNamespace: string, pod: OraclePod, options: OracleOptions): boolean => {
  const podSelector = field(peer, "podSelector")
  const namespaceSelector = field(peer, "namespaceSelector")
  const ipBlock = field(peer, "ipBlock")
  const hasPod = podSelector !== undefined && podSelector !== null
  const hasNamespace = namespaceSelector !== undefined && namespaceSelector !== null
  const hasBlock = ipBlock !== undefined && ipBlock !== null
  if (hasBlock) {
    if (hasPod || hasNamespace) throw new TypeError(`a peer may not combine ipBlock with a selector: ${JSON.stringify(peer)}`)
    return ipBlockMatches(ipBlock, pod, options)
  }
  if (!hasPod && !hasNamespace) throw new TypeError(`a peer needs podSelector, namespaceSelector or ipBlock: ${JSON.stringify(peer)}`)
  const namespaceOk = hasNamespace
    ? selectorMatches(namespaceSelector, namespaceLabels(world, pod.namespace))
    : pod.namespace === policyNamespace
  return namespaceOk && (!hasPod || selectorMatches(podSelector, pod.labels))
}

/**
 * NetworkPolicyPort against the destination `dst` on (port, protocol). Protocol defaults to
 * TCP; no port means every port of the protocol; a named port is looked up in dst's declared
 * ports (same name and protocol), and matches nothing when dst declares none; endPort makes
 * the numeric port an inclusive range.
 */
const portMatches = (entry: unknown, dst: OraclePod, port: number, protocol: Protocol): boolean => {
  const entryProtocol = field(entry, "protocol") ?? "TCP"
  const entryPort = field(entry, "port")
  const endPort = field(entry, "endPort")
  if (entryProtocol !== protocol) return false
  if (endPort !== undefined && endPort !== null && typeof entryPort !== "number") {
    throw new TypeError(`endPort needs a numeric port: ${JSON.stringify(entry)}`)
  }
  if (entryPort === undefined || entryPort === null) return true
  if (typeof entryPort === "number") {
    if (typeof endPort === "number") {
      if (endPort < entryPort) throw new TypeError(`endPort below port: ${JSON.stringify(entry)}`)
      return port >= entryPort && port <= endPort
    }
    return port === entryPort
  }
  if (typeof entryPort === "string") {
    return dst.ports.some((declared) => declared.name === entryPort && declared.protocol === protocol && declared.port === port)
  }
  throw new TypeError(`invalid port ${JSON.stringify(entry)}`)
}

// ---------------------------------------------------------------------------------------
// policies

type Direction = "Ingress" | "Egress"

interface Policy {
  readonly name: string
  readonly namespace: string
  readonly podSelector: unknown
  readonly types: ReadonlyArray<Direction>
  readonly ingress: ReadonlyArray<unknown>
  readonly egress: ReadonlyArray<unknown>
}

/** Reads one NetworkPolicy, applying the API server's policyTypes default. */
const readPolicy = (object: unknown): Policy => {
  const metadata = field(object, "metadata")
  const spec = field(object, "spec")
  if (!isObject(spec)) throw new TypeError(`NetworkPolicy without a spec: ${JSON.stringify(object)}`)
  const namespace = field(metadata, "namespace")
  const name = field(metadata, "name")
  const ingress = list(field(spec, "ingress")) ?? []
  const egress = list(field(spec, "egress")) ?? []
  const declared = list(field(spec, "policyTypes")) ?? []
  for (const type of declared) {
    if (type !== "Ingress" && type !== "Egress") throw new TypeError(`unknown policyType ${JSON.stringify(type)}`)
  }
  // policyTypes omitted (or empty): Ingress always, Egress when there are egress rules
  const types: Array<Direction> = declared.length > 0
    ? (declared as Array<Direction>)
    : egress.length > 0 ? ["Ingress", "Egress"] : ["Ingress"]
  return {
    name: typeof name === "string" ? name : "",
    namespace: typeof namespace === "string" && namespace !== "" ? namespace : "default",
    podSelector: field(spec, "podSelector") ?? {},
    types,
    ingress,
    egress
  }
}

/** The connection being judged: the world, its destination and what it is sent to. */
interface Connection {
  readonly world: OracleWorld
  readonly dst: OraclePod
  readonly port: number
  readonly protocol: Protocol
  readonly options: OracleOptions
}

/** A rule: its peers (`from`/`to`; omitted or empty = everyone) AND its ports (omitted or empty = all). */
const ruleAllows = (conn: Connection, rule: unknown, peersKey: "from" | "to", policyNamespace: string, peer: OraclePod): boolean => {
  const peers = list(field(rule, peersKey)) ?? []
  const ports = list(field(rule, "ports")) ?? []
  const peerOk = peers.length === 0 || peers.some((p) => peerMatches(conn.world, p, policyNamespace, peer, conn.options))
  const portOk = ports.length === 0 || ports.some((entry) => portMatches(entry, conn.dst, conn.port, conn.protocol))
  return peerOk && portOk
}

/**
 * One direction at one pod: `subject` is the pod policies select (src for Egress, dst for
 * Ingress), `peer` the other end. Unselected → allowed; selected → some rule allows.
 */
const directionAllows = (conn: Connection, policies: ReadonlyArray<Policy>, direction: Direction, subject: OraclePod, peer: OraclePod): boolean => {
  const selecting = policies.filter((policy) =>
    policy.types.includes(direction) && policy.namespace === subject.namespace && selectorMatches(policy.podSelector, subject.labels)
  )
  if (selecting.length === 0) return true
  const peersKey = direction === "Ingress" ? "from" : "to"
  return selecting.some((policy) =>
    (direction === "Ingress" ? policy.ingress : policy.egress).some((rule) => ruleAllows(conn, rule, peersKey, policy.namespace, peer))
  )
}

const samePod = (a: OraclePod, b: OraclePod): boolean => a.namespace === b.namespace && a.name === b.name

/** The decision on policies already read (readPolicy), shared by allowed and expectedMatrix. */
const decide = (
  world: OracleWorld,
  policies: ReadonlyArray<Policy>,
  src: OraclePod,
  dst: OraclePod,
  port: number,
  protocol: Protocol,
  options: OracleOptions
): boolean => {
  if (samePod(src, dst)) return true
  const conn: Connection = { world, dst, port, protocol, options }
  return directionAllows(conn, policies, "Egress", src, dst) && directionAllows(conn, policies, "Ingress", dst, src)
}

/**
 * Whether NetworkPolicy allows a new connection from `src` to `dst` on (port, protocol):
 * egress allowed at src AND ingress allowed at dst; a pod reaching itself is always allowed.
 * `options.family` limits ipBlock matching to the addresses of one family.
 */
export const allowed = (
  world: OracleWorld,
  src: OraclePod,
  dst: OraclePod,
  port: number,
  protocol: Protocol,
  options: OracleOptions = {}
): boolean => decide(world, world.policies.map(readPolicy), src, dst, port, protocol, options)

/** The key of one cell of a truth table: `ns/a -> ns/b 80/TCP`. */
export const matrixKey = (src: string, dst: string, port: number, protocol: string): string => `${src} -> ${dst} ${port}/${protocol}`

/**
 * The expected truth table over every (src, dst, port, protocol) of `pods` × `pods` ×
 * `ports` × `protocols` (a pod to itself included), keyed by {@link matrixKey} with
 * `namespace/name` identities.
 */
export const expectedMatrix = (
  world: OracleWorld,
  pods: ReadonlyArray<OraclePod>,
  ports: ReadonlyArray<number>,
  protocols: ReadonlyArray<Protocol>,
  options: OracleOptions = {}
): Map<string, boolean> => {
  const policies = world.policies.map(readPolicy)
  const out = new Map<string, boolean>()
  for (const src of pods) {
    for (const dst of pods) {
      for (const port of ports) {
        for (const protocol of protocols) {
          out.set(matrixKey(`${src.namespace}/${src.name}`, `${dst.namespace}/${dst.name}`, port, protocol), decide(world, policies, src, dst, port, protocol, options))
        }
      }
    }
  }
  return out
}
