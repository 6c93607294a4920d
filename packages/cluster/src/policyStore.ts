/**
 * Where NetworkPolicy's inputs live in etcd, and their decoded view, shared by the agent
 * (policyAgent.ts) and `cni policy` so both read the datastore the same way:
 *
 *   <prefix>/namespaces/<name>             Namespace JSON (labels)
 *   <prefix>/pods/<namespace>/<name>       Pod JSON (labels, declared container ports)
 *   <prefix>/policies/<namespace>/<name>   NetworkPolicy JSON
 *   <prefix>/endpoints/<namespace>/<name>  {node, ips, containerID}: written by the agent
 *                                          that served the pod's ADD, removed on its DEL
 *
 * The key names the object (a body naming another is the key's object all the same); a
 * value that cannot be decoded is kept aside with the reason, never enforced.
 */
import { Effect, Schema } from "effect"
import type { World } from "@tscni/policy/model"
import { decodeNamespace, decodePod, decodePolicy, type Namespace, type Pod, type Policy } from "@tscni/policy/objects"
import type { KvError, KvShape } from "./kv.ts"

/** What the agent records for a pod whose ADD it served. */
export const Endpoint = Schema.Struct({ node: Schema.String, ips: Schema.Array(Schema.String), containerID: Schema.String })
export type Endpoint = typeof Endpoint.Type

export const decodeEndpoint = Schema.decodeUnknownOption(Schema.fromJsonString(Endpoint))

export type PolicyKind = "namespaces" | "pods" | "policies" | "endpoints"
const KINDS: ReadonlyArray<string> = ["namespaces", "pods", "policies", "endpoints"]

/** The key of an object: `<prefix>/<kind>/<name>` (namespaces) or `<prefix>/<kind>/<namespace>/<name>`. */
export const policyKey = (prefix: string, kind: PolicyKind, name: string): string => `${prefix}/${kind}/${name}`

/** The decoded objects, by `name` (namespaces) or `namespace/name`, and what was set aside. */
export class PolicyStore {
  readonly namespaces = new Map<string, Namespace>()
  readonly pods = new Map<string, Pod>()
  readonly policies = new Map<string, Policy>()
  readonly endpoints = new Map<string, Endpoint>()
  /** key → why it is not enforced */
  readonly rejected = new Map<string, string>()

  constructor(readonly prefix: string) {}

  /** One key's new value (undefined: deleted). Keys outside the four kinds are ignored. */
  absorb(key: string, value: string | undefined): void {
    const rest = key.slice(this.prefix.length + 1)
    const slash = rest.indexOf("/")
    const kind = rest.slice(0, slash)
    const name = rest.slice(slash + 1)
    if (!KINDS.includes(kind) || name === "") return
    // namespaced kinds are <namespace>/<name>; anything else under them is not ours to read
    if (kind !== "namespaces" && name.split("/").length !== 2) return
    this.rejected.delete(key)
    this.maps[kind as PolicyKind].delete(name)
    if (value === undefined) return
    const problem = this.decode(kind as PolicyKind, name, value)
    if (problem !== undefined) this.rejected.set(key, problem)
  }

  /** Each kind's map, so forgetting and clearing need not ask which it is. */
  private readonly maps: Readonly<Record<PolicyKind, Map<string, unknown>>> = {
    namespaces: this.namespaces,
    pods: this.pods,
    policies: this.policies,
    endpoints: this.endpoints
  }

  /** Stores the decoded value; the reason when it cannot be decoded. */
  private decode(kind: PolicyKind, name: string, value: string): string | undefined {
    if (kind === "endpoints") {
      const endpoint = decodeEndpoint(value)
      if (endpoint._tag === "None") return "not an endpoint record"
      this.endpoints.set(name, endpoint.value)
      return undefined
    }
    let json: unknown
    try {
      json = JSON.parse(value)
    } catch {
      return "not JSON"
    }
    const namespace = name.split("/")[0]!
    const local = name.slice(namespace.length + 1)
    const decoded = Effect.runSync(Effect.result(
      kind === "namespaces"
        ? decodeNamespace(json).pipe(Effect.map((ns) => () => void this.namespaces.set(name, { ...ns, name })))
        : kind === "pods"
        ? decodePod(json, namespace).pipe(Effect.map((pod) => () => void this.pods.set(name, { ...pod, namespace, name: local })))
        : decodePolicy(json, namespace).pipe(Effect.map((policy) => () => void this.policies.set(name, { ...policy, namespace, name: local })))
    ))
    if (decoded._tag === "Failure") return decoded.failure.message
    decoded.success()
    return undefined
  }

  /** The world the model is compiled from: Pod objects joined with the endpoints the agents recorded. */
  world(): World {
    const pods = new Map<string, Pod>()
    for (const [key, pod] of this.pods) {
      const endpoint = this.endpoints.get(key)
      pods.set(key, endpoint === undefined ? pod : { ...pod, ips: endpoint.ips, nodeName: endpoint.node })
    }
    // a pod ADDed before its object was written: known by its address, with no labels yet
    for (const [key, endpoint] of this.endpoints) {
      if (pods.has(key)) continue
      const cut = key.indexOf("/")
      pods.set(key, { namespace: key.slice(0, cut), name: key.slice(cut + 1), labels: {}, ports: [], ips: endpoint.ips, nodeName: endpoint.node })
    }
    return { namespaces: this.namespaces, pods, policies: this.policies }
  }

  /** Forgets everything of `kinds` (before the source hands them over whole again). */
  clear(kinds: ReadonlyArray<PolicyKind>): void {
    for (const kind of kinds) {
      this.maps[kind].clear()
      for (const key of [...this.rejected.keys()]) if (key.startsWith(`${this.prefix}/${kind}/`)) this.rejected.delete(key)
    }
  }
}

/** Everything under the prefix, decoded, and the revision it was read at. */
export const readPolicyStore = (kv: KvShape, prefix: string): Effect.Effect<{ readonly store: PolicyStore; readonly revision: bigint }, KvError> =>
  Effect.map(kv.list(`${prefix}/`), ({ entries, revision }) => {
    const store = new PolicyStore(prefix)
    for (const entry of entries) store.absorb(entry.key, entry.value)
    return { store, revision }
  })

/** Writes `key` whatever it holds now (compare-and-swap, retried while someone else writes it). */
export const putKey = (kv: KvShape, key: string, value: string): Effect.Effect<boolean, KvError> =>
  Effect.gen(function*() {
    for (let attempt = 0; attempt < 5; attempt++) {
      const { entries } = yield* kv.list(key)
      const current = entries.find((entry) => entry.key === key)
      const written = current === undefined ? yield* kv.createIfAbsent(key, value) : yield* kv.replaceIf(key, current.modRevision, value)
      if (written) return true
    }
    return false
  })

/** Deletes `key` if `still(value)` holds for what it holds now; false when absent or not deleted. */
export const deleteKey = (kv: KvShape, key: string, still: (value: string) => boolean = () => true): Effect.Effect<boolean, KvError> =>
  Effect.gen(function*() {
    const { entries } = yield* kv.list(key)
    const current = entries.find((entry) => entry.key === key)
    if (current === undefined || !still(current.value)) return false
    return yield* kv.deleteIf(key, current.modRevision)
  })
