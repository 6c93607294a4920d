/**
 * The agent's NetworkPolicy enforcement (etcd datastore): it lists and watches the
 * cluster's namespaces, pods, policies and pod endpoints under the agent's prefix —
 *
 *   <prefix>/namespaces/<name>          Namespace JSON (labels)
 *   <prefix>/pods/<namespace>/<name>    Pod JSON (labels, declared container ports)
 *   <prefix>/policies/<namespace>/<name> NetworkPolicy JSON
 *   <prefix>/endpoints/<namespace>/<name> {node, ips, containerID}: written by the agent
 *                                       that served the pod's ADD, removed on its DEL
 *
 * — compiles them (@tscni/policy) and keeps the node's `inet tscni-policy` table equal to
 * the rendering for this node's pods. The first write after a start replaces the table in
 * one transaction (the old one enforces until then: a restart never opens a window); every
 * later one is the difference, in one transaction. An ADD the agent serves waits until the
 * new pod is enforced before it answers, so the pod is isolated from its first packet.
 */
import { Effect, Schema, Semaphore } from "effect"
import { Backend, type BackendError, HOST_NETNS } from "@tscni/backend"
import { compile, podKey, type World } from "@tscni/policy/model"
import { diffRulesets, isEmptyChange, POLICY_TABLE, type PolicyRuleset, renderRuleset, tableOf } from "@tscni/policy/nft"
import { decodeNamespace, decodePod, decodePolicy, type Namespace, type Pod, type Policy } from "@tscni/policy/objects"
import type { KvEvent, KvShape } from "./kv.ts"

/** What the agent records for a pod whose ADD it served. */
export const Endpoint = Schema.Struct({ node: Schema.String, ips: Schema.Array(Schema.String), containerID: Schema.String })
export type Endpoint = typeof Endpoint.Type

const decodeEndpoint = Schema.decodeUnknownOption(Schema.fromJsonString(Endpoint))

export const endpointsPrefix = (prefix: string) => `${prefix}/endpoints/`

/** What the enforcement has done, for metrics and tests. */
export interface PolicyStatus {
  /** the datastore revision the kernel state reflects (everything up to it is enforced) */
  readonly appliedRevision: bigint
  readonly policies: number
  readonly localPods: number
  /** objects that could not be decoded, and why (they are not enforced) */
  readonly rejected: ReadonlyArray<string>
}

export interface PolicyAgent {
  /** runs until it fails (the caller restarts it): list, replace the table, then watch and apply differences */
  readonly run: Effect.Effect<never, unknown>
  /** a pod's ADD was served here: enforce it, then record its endpoint */
  readonly attached: (pod: { readonly namespace: string; readonly name: string; readonly containerID: string; readonly ips: ReadonlyArray<string> }) => Effect.Effect<void, unknown>
  /** a pod's DEL was served here */
  readonly detached: (containerID: string) => Effect.Effect<void, unknown>
}

/** The raw datastore view, by key, decoded. */
interface State {
  readonly namespaces: Map<string, Namespace>
  readonly pods: Map<string, Pod>
  readonly policies: Map<string, Policy>
  readonly endpoints: Map<string, Endpoint>
  readonly rejected: Map<string, string>
  revision: bigint
}

const log = (line: string) => Effect.sync(() => process.stderr.write(`tscni agent: policy: ${line}\n`))

/** The world the model is compiled from: Pod objects joined with the endpoints the agents recorded. */
const worldOf = (state: State): World => {
  const pods = new Map<string, Pod>()
  for (const [key, pod] of state.pods) {
    const endpoint = state.endpoints.get(key)
    pods.set(key, endpoint === undefined ? pod : { ...pod, ips: endpoint.ips, nodeName: endpoint.node })
  }
  // a pod ADDed before its object was written: known by its address, with no labels yet
  for (const [key, endpoint] of state.endpoints) {
    if (pods.has(key)) continue
    const cut = key.indexOf("/")
    pods.set(key, { namespace: key.slice(0, cut), name: key.slice(cut + 1), labels: {}, ports: [], ips: endpoint.ips, nodeName: endpoint.node })
  }
  return { namespaces: state.namespaces, pods, policies: state.policies }
}

export const makePolicyAgent = (
  kv: KvShape,
  prefix: string,
  node: string,
  onStatus: (status: PolicyStatus) => void
): Effect.Effect<PolicyAgent, never, Backend> =>
  Effect.gen(function*() {
    const backend = yield* Backend
    const state: State = { namespaces: new Map(), pods: new Map(), policies: new Map(), endpoints: new Map(), rejected: new Map(), revision: 0n }
    const lock = Semaphore.makeUnsafe(1)
    /** what the kernel holds; undefined until the first (replacing) write of this process */
    let applied: PolicyRuleset | undefined
    let synced = false

    /** Applies one datastore change to the state (a key outside the four kinds is ignored). */
    const absorb = (key: string, value: string | undefined): Effect.Effect<void> =>
      Effect.gen(function*() {
        const rest = key.slice(prefix.length + 1)
        const slash = rest.indexOf("/")
        const kind = rest.slice(0, slash)
        const name = rest.slice(slash + 1)
        if (!["namespaces", "pods", "policies", "endpoints"].includes(kind) || name === "") return
        // namespaced kinds are <namespace>/<name>; anything else under them is not ours to read
        if (kind !== "namespaces" && name.split("/").length !== 2) return
        state.rejected.delete(key)
        if (value === undefined) {
          if (kind === "namespaces") state.namespaces.delete(name)
          else if (kind === "pods") state.pods.delete(name)
          else if (kind === "policies") state.policies.delete(name)
          else state.endpoints.delete(name)
          return
        }
        const namespace = name.split("/")[0]!
        const json = yield* Effect.try({ try: (): unknown => JSON.parse(value), catch: () => "not JSON" }).pipe(Effect.option)
        const reject = (why: string) => {
          state.rejected.set(key, why)
          return log(`${key} is not enforced: ${why}`)
        }
        if (json._tag === "None") {
          yield* reject("not JSON")
          return
        }
        if (kind === "endpoints") {
          const endpoint = decodeEndpoint(value)
          if (endpoint._tag === "None") {
            yield* reject("not an endpoint record")
            return
          }
          state.endpoints.set(name, endpoint.value)
          return
        }
        const failed = (error: { readonly message: string }) => reject(error.message)
        // the key names the object: a body naming another is the key's object all the same
        const local = name.slice(namespace.length + 1)
        if (kind === "namespaces") {
          yield* decodeNamespace(json.value).pipe(Effect.match({ onFailure: failed, onSuccess: (ns) => Effect.sync(() => void state.namespaces.set(name, ns)) }), Effect.flatten)
        } else if (kind === "pods") {
          yield* decodePod(json.value, namespace).pipe(Effect.match({ onFailure: failed, onSuccess: (pod) => Effect.sync(() => void state.pods.set(name, { ...pod, namespace, name: local })) }), Effect.flatten)
        } else {
          yield* decodePolicy(json.value, namespace).pipe(Effect.match({ onFailure: failed, onSuccess: (policy) => Effect.sync(() => void state.policies.set(name, { ...policy, namespace, name: local })) }), Effect.flatten)
        }
      })

    const isLocal = (pod: Pod) => pod.nodeName === node

    /** Makes the kernel table what the state says (the caller holds the lock). */
    const enforce: Effect.Effect<void, BackendError> = Effect.gen(function*() {
      if (!synced) return
      const revision = state.revision
      const model = compile(worldOf(state))
      const wanted = renderRuleset(model, isLocal)
      if (applied === undefined) {
        const { table, elements } = tableOf(wanted)
        yield* backend.replaceNftTable(HOST_NETNS, table, elements)
      } else {
        const changes = diffRulesets(applied, wanted)
        if (!isEmptyChange(changes)) yield* backend.changeNftTable(HOST_NETNS, POLICY_TABLE, changes)
      }
      applied = wanted
      const localPods = [...model.world.pods.values()].filter(isLocal).length
      onStatus({ appliedRevision: revision, policies: model.policies.size, localPods, rejected: [...state.rejected].map(([k, why]) => `${k}: ${why}`) })
    })
    const enforceLocked = lock.withPermits(1)(enforce)

    const onEvents = (events: ReadonlyArray<KvEvent>) =>
      Effect.gen(function*() {
        for (const event of events) {
          if (event.type === "put") yield* absorb(event.entry.key, event.entry.value)
          else yield* absorb(event.key, undefined)
          const revision = event.type === "put" ? event.entry.modRevision : event.modRevision
          if (revision > state.revision) state.revision = revision
        }
        // a failed write is retried by the next event or the caller's restart; said, not fatal here
        yield* enforceLocked.pipe(Effect.catch((error) => log(`enforcing: ${error.message}`)))
      })

    const run: PolicyAgent["run"] = Effect.gen(function*() {
      const { entries, revision } = yield* kv.list(`${prefix}/`)
      yield* lock.withPermits(1)(Effect.gen(function*() {
        state.namespaces.clear()
        state.pods.clear()
        state.policies.clear()
        state.endpoints.clear()
        state.rejected.clear()
        for (const entry of entries) yield* absorb(entry.key, entry.value)
        state.revision = revision
        synced = true
        yield* enforce
      }))
      return yield* kv.watch(`${prefix}/`, revision, onEvents)
    })

    const endpointKey = (key: string) => `${endpointsPrefix(prefix)}${key}`

    /** Writes (or rewrites) the endpoint record; the watch brings it back to the state. */
    const record = (key: string, endpoint: Endpoint) =>
      Effect.gen(function*() {
        const value = JSON.stringify(endpoint)
        for (let attempt = 0; attempt < 5; attempt++) {
          const { entries } = yield* kv.list(endpointKey(key))
          const current = entries.find((entry) => entry.key === endpointKey(key))
          const written = current === undefined ? yield* kv.createIfAbsent(endpointKey(key), value) : yield* kv.replaceIf(endpointKey(key), current.modRevision, value)
          if (written) return
        }
        return yield* log(`could not record ${key}'s endpoint: it kept changing`)
      })

    const attached: PolicyAgent["attached"] = (pod) =>
      Effect.gen(function*() {
        const key = podKey(pod)
        const endpoint: Endpoint = { node, ips: [...pod.ips], containerID: pod.containerID }
        yield* lock.withPermits(1)(Effect.gen(function*() {
          state.endpoints.set(key, endpoint)
          yield* enforce
        }))
        yield* record(key, endpoint)
      })

    const detached: PolicyAgent["detached"] = (containerID) =>
      Effect.gen(function*() {
        const found = [...state.endpoints].find(([, endpoint]) => endpoint.containerID === containerID && endpoint.node === node)
        if (found === undefined) return
        const [key] = found
        yield* lock.withPermits(1)(Effect.gen(function*() {
          if (state.endpoints.get(key)?.containerID === containerID) state.endpoints.delete(key)
          yield* enforce
        }))
        const { entries } = yield* kv.list(endpointKey(key))
        const current = entries.find((entry) => entry.key === endpointKey(key))
        if (current !== undefined && decodeEndpoint(current.value).pipe((o) => o._tag === "Some" && o.value.containerID === containerID)) {
          yield* kv.deleteIf(endpointKey(key), current.modRevision)
        }
      })

    return { run, attached, detached }
  })
