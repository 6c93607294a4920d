/**
 * The three Kubernetes objects NetworkPolicy enforcement reads — NetworkPolicy
 * (networking.k8s.io/v1), Pod and Namespace (v1) — decoded from their Kubernetes JSON once,
 * at the edge, into plain checked values. Everything an API server would default or
 * validate is done here, because in etcd mode there is no API server: `protocol` defaults to
 * TCP, `policyTypes` is inferred, a CIDR must be one, `endPort` needs a numeric `port`.
 * Errors name the field (`spec.ingress[0].from[1].ipBlock.cidr`).
 */
import { Effect, Schema } from "effect"
import { type Cidr, contains, formatCidr, hasHostBits, parseCidr, parseIp } from "@tscni/ip"
import { describeSchemaError } from "@tscni/spec/schema-error"

/** An object that cannot be enforced as written; `field` names where. */
export class PolicyObjectError extends Schema.TaggedError<PolicyObjectError>()("PolicyObjectError", {
  kind: Schema.String,
  name: Schema.String,
  field: Schema.String,
  problem: Schema.String
}) {
  override get message(): string {
    return `${this.kind} ${this.name}: ${this.field === "" ? "" : `${this.field}: `}${this.problem}`
  }
}

export type Protocol = "TCP" | "UDP" | "SCTP"
export type Labels = Readonly<Record<string, string>>

/** The label every namespace carries implicitly (Kubernetes sets it; etcd mode implies it). */
export const NAMESPACE_NAME_LABEL = "kubernetes.io/metadata.name"

const LabelSelectorJson = Schema.Struct({
  matchLabels: Schema.optionalKey(Schema.Record(Schema.String, Schema.String)),
  matchExpressions: Schema.optionalKey(Schema.Array(Schema.Struct({
    key: Schema.String,
    operator: Schema.Literals(["In", "NotIn", "Exists", "DoesNotExist"]),
    values: Schema.optionalKey(Schema.Array(Schema.String))
  })))
})
const PeerJson = Schema.Struct({
  podSelector: Schema.optionalKey(LabelSelectorJson),
  namespaceSelector: Schema.optionalKey(LabelSelectorJson),
  ipBlock: Schema.optionalKey(Schema.Struct({ cidr: Schema.String, except: Schema.optionalKey(Schema.Array(Schema.String)) }))
})
const PortJson = Schema.Struct({
  protocol: Schema.optionalKey(Schema.Literals(["TCP", "UDP", "SCTP"])),
  port: Schema.optionalKey(Schema.Union([Schema.Number, Schema.String])),
  endPort: Schema.optionalKey(Schema.Number)
})
const MetadataJson = Schema.Struct({
  name: Schema.String,
  namespace: Schema.optionalKey(Schema.String),
  labels: Schema.optionalKey(Schema.Record(Schema.String, Schema.String))
})
const NetworkPolicyJson = Schema.Struct({
  kind: Schema.optionalKey(Schema.Literal("NetworkPolicy")),
  metadata: MetadataJson,
  spec: Schema.Struct({
    podSelector: LabelSelectorJson,
    policyTypes: Schema.optionalKey(Schema.Array(Schema.Literals(["Ingress", "Egress"]))),
    ingress: Schema.optionalKey(Schema.Array(Schema.Struct({ from: Schema.optionalKey(Schema.Array(PeerJson)), ports: Schema.optionalKey(Schema.Array(PortJson)) }))),
    egress: Schema.optionalKey(Schema.Array(Schema.Struct({ to: Schema.optionalKey(Schema.Array(PeerJson)), ports: Schema.optionalKey(Schema.Array(PortJson)) })))
  })
})
const PodJson = Schema.Struct({
  kind: Schema.optionalKey(Schema.Literal("Pod")),
  metadata: MetadataJson,
  spec: Schema.optionalKey(Schema.Struct({
    nodeName: Schema.optionalKey(Schema.String),
    containers: Schema.optionalKey(Schema.Array(Schema.Struct({
      ports: Schema.optionalKey(Schema.Array(Schema.Struct({
        name: Schema.optionalKey(Schema.String),
        containerPort: Schema.Number,
        protocol: Schema.optionalKey(Schema.Literals(["TCP", "UDP", "SCTP"]))
      })))
    })))
  })),
  status: Schema.optionalKey(Schema.Struct({
    podIP: Schema.optionalKey(Schema.String),
    podIPs: Schema.optionalKey(Schema.Array(Schema.Struct({ ip: Schema.String })))
  }))
})
const NamespaceJson = Schema.Struct({ kind: Schema.optionalKey(Schema.Literal("Namespace")), metadata: MetadataJson })

/** A label selector, checked: `{}` (both parts empty) selects everything. */
export interface Selector {
  readonly matchLabels: ReadonlyArray<readonly [string, string]>
  readonly expressions: ReadonlyArray<{ readonly key: string; readonly operator: "In" | "NotIn" | "Exists" | "DoesNotExist"; readonly values: ReadonlyArray<string> }>
}

/** One peer of a rule: pods (by selectors; no namespaceSelector = the policy's namespace) or an IP block. */
export type Peer =
  | { readonly kind: "pods"; readonly podSelector: Selector | undefined; readonly namespaceSelector: Selector | undefined }
  | { readonly kind: "ipBlock"; readonly cidr: Cidr; readonly except: ReadonlyArray<Cidr> }

/** One `ports` entry: a number (a range with endPort), a container port's name, or every port of the protocol. */
export type PortSpec =
  | { readonly kind: "numbers"; readonly protocol: Protocol; readonly from: number; readonly to: number }
  | { readonly kind: "named"; readonly protocol: Protocol; readonly name: string }

/** One rule: `peers` empty matches every peer, `ports` empty every port and protocol. */
export interface Rule {
  readonly peers: ReadonlyArray<Peer>
  readonly ports: ReadonlyArray<PortSpec>
}

export interface Policy {
  readonly namespace: string
  readonly name: string
  readonly podSelector: Selector
  /** undefined: the policy does not restrict this direction (not in its policyTypes) */
  readonly ingress: ReadonlyArray<Rule> | undefined
  readonly egress: ReadonlyArray<Rule> | undefined
}

export interface ContainerPort {
  readonly name: string | undefined
  readonly port: number
  readonly protocol: Protocol
}

export interface Pod {
  readonly namespace: string
  readonly name: string
  readonly labels: Labels
  readonly ports: ReadonlyArray<ContainerPort>
  /** from status.podIPs (Kubernetes); in etcd mode the agent's endpoint record gives them */
  readonly ips: ReadonlyArray<string>
  readonly nodeName: string | undefined
}

export interface Namespace {
  readonly name: string
  readonly labels: Labels
}

/** Kubernetes JSON may carry `null` for an absent field (kubectl does): absent it is. */
const withoutNulls = (value: unknown): unknown => {
  if (Array.isArray(value)) return value.map(withoutNulls)
  if (typeof value !== "object" || value === null) return value
  return Object.fromEntries(Object.entries(value).filter(([, v]) => v !== null).map(([k, v]) => [k, withoutNulls(v)]))
}

/** Decodes against the schema; an error names the object as `namespace/name` (namespaced kinds) or `name`. */
const decodeAs = <S extends Schema.Top>(schema: S, kind: string, json: unknown, defaultNamespace: string | undefined) =>
  Schema.decodeUnknownEffect(schema)(withoutNulls(json)).pipe(
    Effect.mapError((error) => {
      const { path, message } = describeSchemaError(error)
      const metadata = (json as { metadata?: { name?: unknown; namespace?: unknown } } | undefined)?.metadata
      const name = typeof metadata?.name === "string" ? metadata.name : "?"
      const namespace = typeof metadata?.namespace === "string" ? metadata.namespace : defaultNamespace
      return new PolicyObjectError({ kind, name: namespace === undefined ? name : `${namespace}/${name}`, field: path, problem: message })
    })
  )

/** Label values and keys as the API allows them (qualified names; values ≤ 63 chars). */
const LABEL_KEY = /^([a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?\/)?[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?$/
const LABEL_VALUE = /^([A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?)?$/
/** IANA_SVC_NAME: what a named port may be */
const PORT_NAME = /^(?=.{1,15}$)(?=.*[a-z])[a-z0-9]+(-[a-z0-9]+)*$/
/** DNS-1123 labels: namespace and object names */
const NAME = /^[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?$/

export const checkLabels = (labels: Labels | undefined, field: string): string | undefined => {
  for (const [key, value] of Object.entries(labels ?? {})) {
    if (!LABEL_KEY.test(key)) return `${field}: '${key}' is not a label key`
    if (!LABEL_VALUE.test(value)) return `${field}["${key}"]: '${value}' is not a label value`
  }
  return undefined
}

type SelectorJson = typeof LabelSelectorJson.Type

const selector = (json: SelectorJson, field: string): Selector | string => {
  const bad = checkLabels(json.matchLabels, `${field}.matchLabels`)
  if (bad !== undefined) return bad
  const expressions: Array<Selector["expressions"][number]> = []
  for (const [i, e] of (json.matchExpressions ?? []).entries()) {
    const where = `${field}.matchExpressions[${i}]`
    const values = e.values ?? []
    if (!LABEL_KEY.test(e.key)) return `${where}.key: '${e.key}' is not a label key`
    if ((e.operator === "In" || e.operator === "NotIn") && values.length === 0) return `${where}.values: ${e.operator} needs at least one value`
    if ((e.operator === "Exists" || e.operator === "DoesNotExist") && values.length > 0) return `${where}.values: ${e.operator} takes no values`
    expressions.push({ key: e.key, operator: e.operator, values })
  }
  return { matchLabels: Object.entries(json.matchLabels ?? {}), expressions }
}

const cidrOf = (text: string, field: string): Cidr | string => {
  const cidr = parseCidr(text)
  if (cidr === undefined) return `${field}: '${text}' is not a CIDR`
  if (hasHostBits(cidr)) return `${field}: '${text}' has host bits set`
  return cidr
}

const peer = (json: typeof PeerJson.Type, field: string): Peer | string => {
  if (json.ipBlock !== undefined) {
    if (json.podSelector !== undefined || json.namespaceSelector !== undefined) return `${field}: ipBlock cannot be combined with podSelector or namespaceSelector`
    const cidr = cidrOf(json.ipBlock.cidr, `${field}.ipBlock.cidr`)
    if (typeof cidr === "string") return cidr
    const except: Array<Cidr> = []
    for (const [i, text] of (json.ipBlock.except ?? []).entries()) {
      const e = cidrOf(text, `${field}.ipBlock.except[${i}]`)
      if (typeof e === "string") return e
      if (e.ip.family !== cidr.ip.family || e.prefix <= cidr.prefix || !contains(cidr, e.ip)) {
        return `${field}.ipBlock.except[${i}]: '${text}' is not strictly inside ${formatCidr(cidr)}`
      }
      except.push(e)
    }
    return { kind: "ipBlock", cidr, except }
  }
  if (json.podSelector === undefined && json.namespaceSelector === undefined) return `${field}: a peer needs podSelector, namespaceSelector or ipBlock`
  const pods = json.podSelector === undefined ? undefined : selector(json.podSelector, `${field}.podSelector`)
  if (typeof pods === "string") return pods
  const namespaces = json.namespaceSelector === undefined ? undefined : selector(json.namespaceSelector, `${field}.namespaceSelector`)
  if (typeof namespaces === "string") return namespaces
  return { kind: "pods", podSelector: pods, namespaceSelector: namespaces }
}

const portSpec = (json: typeof PortJson.Type, field: string): PortSpec | string => {
  const protocol = json.protocol ?? "TCP"
  const isPort = (n: number) => Number.isInteger(n) && n >= 1 && n <= 65535
  if (json.port === undefined) {
    if (json.endPort !== undefined) return `${field}.endPort: needs a numeric port`
    return { kind: "numbers", protocol, from: 1, to: 65535 }
  }
  if (typeof json.port === "string") {
    if (/^[0-9]+$/.test(json.port)) return `${field}.port: '${json.port}' is a number written as a string`
    if (!PORT_NAME.test(json.port)) return `${field}.port: '${json.port}' is neither a port number nor a port name`
    if (json.endPort !== undefined) return `${field}.endPort: needs a numeric port, not the name '${json.port}'`
    return { kind: "named", protocol, name: json.port }
  }
  if (!isPort(json.port)) return `${field}.port: ${json.port} is not a port from 1 to 65535`
  const to = json.endPort ?? json.port
  if (!isPort(to) || to < json.port) return `${field}.endPort: ${to} must be a port from ${json.port} to 65535`
  return { kind: "numbers", protocol, from: json.port, to }
}

const rule = (peers: ReadonlyArray<typeof PeerJson.Type>, ports: ReadonlyArray<typeof PortJson.Type>, field: string, peersField: string): Rule | string => {
  const checkedPeers: Array<Peer> = []
  for (const [i, json] of peers.entries()) {
    const p = peer(json, `${field}.${peersField}[${i}]`)
    if (typeof p === "string") return p
    checkedPeers.push(p)
  }
  const checkedPorts: Array<PortSpec> = []
  for (const [i, json] of ports.entries()) {
    const p = portSpec(json, `${field}.ports[${i}]`)
    if (typeof p === "string") return p
    checkedPorts.push(p)
  }
  return { peers: checkedPeers, ports: checkedPorts }
}

const nameProblem = (name: string, field: string): string | undefined =>
  NAME.test(name) && name.length <= 253 ? undefined : `${field}: '${name}' is not a valid name`

/** The error for `problem` (a "field: text" string) of an object. */
const objectError = (kind: string, name: string, problem: string) => {
  const cut = problem.indexOf(": ")
  return new PolicyObjectError({ kind, name, field: cut < 0 ? "" : problem.slice(0, cut), problem: cut < 0 ? problem : problem.slice(cut + 2) })
}

/** Decodes a NetworkPolicy from its Kubernetes JSON; `defaultNamespace` where metadata has none. */
export const decodePolicy = (json: unknown, defaultNamespace = "default"): Effect.Effect<Policy, PolicyObjectError> =>
  Effect.gen(function*() {
    const raw = yield* decodeAs(NetworkPolicyJson, "NetworkPolicy", json, defaultNamespace)
    const name = raw.metadata.name
    const namespace = raw.metadata.namespace ?? defaultNamespace
    const fail = (problem: string) => Effect.fail(objectError("NetworkPolicy", `${namespace}/${name}`, problem))
    const badName = nameProblem(name, "metadata.name") ?? nameProblem(namespace, "metadata.namespace")
    if (badName !== undefined) return yield* fail(badName)
    const podSelector = selector(raw.spec.podSelector, "spec.podSelector")
    if (typeof podSelector === "string") return yield* fail(podSelector)
    const types = raw.spec.policyTypes ?? ["Ingress", ...((raw.spec.egress ?? []).length > 0 ? ["Egress" as const] : [])]
    const ingress: Array<Rule> = []
    for (const [i, json] of (raw.spec.ingress ?? []).entries()) {
      const r = rule(json.from ?? [], json.ports ?? [], `spec.ingress[${i}]`, "from")
      if (typeof r === "string") return yield* fail(r)
      ingress.push(r)
    }
    const egress: Array<Rule> = []
    for (const [i, json] of (raw.spec.egress ?? []).entries()) {
      const r = rule(json.to ?? [], json.ports ?? [], `spec.egress[${i}]`, "to")
      if (typeof r === "string") return yield* fail(r)
      egress.push(r)
    }
    return {
      namespace,
      name,
      podSelector,
      ingress: types.includes("Ingress") ? ingress : undefined,
      egress: types.includes("Egress") ? egress : undefined
    }
  })

/** Decodes a Pod (labels, declared container ports, IPs, node) from its Kubernetes JSON. */
export const decodePod = (json: unknown, defaultNamespace = "default"): Effect.Effect<Pod, PolicyObjectError> =>
  Effect.gen(function*() {
    const raw = yield* decodeAs(PodJson, "Pod", json, defaultNamespace)
    const namespace = raw.metadata.namespace ?? defaultNamespace
    const fail = (problem: string) => Effect.fail(objectError("Pod", `${namespace}/${raw.metadata.name}`, problem))
    const bad = nameProblem(raw.metadata.name, "metadata.name") ?? nameProblem(namespace, "metadata.namespace") ?? checkLabels(raw.metadata.labels, "metadata.labels")
    if (bad !== undefined) return yield* fail(bad)
    const ports: Array<ContainerPort> = []
    for (const [c, container] of (raw.spec?.containers ?? []).entries()) {
      for (const [i, p] of (container.ports ?? []).entries()) {
        const field = `spec.containers[${c}].ports[${i}]`
        if (!Number.isInteger(p.containerPort) || p.containerPort < 1 || p.containerPort > 65535) return yield* fail(`${field}.containerPort: ${p.containerPort} is not a port`)
        if (p.name !== undefined && !PORT_NAME.test(p.name)) return yield* fail(`${field}.name: '${p.name}' is not a port name`)
        ports.push({ name: p.name, port: p.containerPort, protocol: p.protocol ?? "TCP" })
      }
    }
    const ips = raw.status?.podIPs?.map((entry) => entry.ip) ?? (raw.status?.podIP !== undefined ? [raw.status.podIP] : [])
    const badIp = ips.find((ip) => parseIp(ip) === undefined)
    if (badIp !== undefined) return yield* fail(`status.podIPs: '${badIp}' is not an IP`)
    return { namespace, name: raw.metadata.name, labels: raw.metadata.labels ?? {}, ports, ips, nodeName: raw.spec?.nodeName }
  })

/** Decodes a Namespace; its implied name label is added. */
export const decodeNamespace = (json: unknown): Effect.Effect<Namespace, PolicyObjectError> =>
  Effect.gen(function*() {
    const raw = yield* decodeAs(NamespaceJson, "Namespace", json, undefined)
    const bad = nameProblem(raw.metadata.name, "metadata.name") ?? checkLabels(raw.metadata.labels, "metadata.labels")
    if (bad !== undefined) return yield* Effect.fail(objectError("Namespace", raw.metadata.name, bad))
    return implicitNamespace(raw.metadata.name, raw.metadata.labels ?? {})
  })

/** A namespace with the label Kubernetes gives every namespace; also what a namespace with no object is. */
export const implicitNamespace = (name: string, labels: Labels = {}): Namespace => ({ name, labels: { ...labels, [NAMESPACE_NAME_LABEL]: name } })
