/**
 * Where the policy enforcement reads its inputs, behind one interface: etcd (every kind
 * under the agent's prefix, one list and one watch, endpoints recorded there) or the
 * Kubernetes API (Namespaces, Pods and NetworkPolicies listed and watched, each on its own;
 * a pod's addresses are its status.podIPs, so the agent's own record of a pod it ADDed
 * stays in its memory). Both hand the agent keys in the etcd layout (policyStore.ts), so one
 * store decodes them.
 */
import { Context, Effect } from "effect"
import type { KubeClient } from "./kube/client.ts"
import type { KvEvent, KvShape } from "./kv.ts"
import { decodeEndpoint, deleteKey, type Endpoint, type PolicyKind, policyKey, putKey } from "./policyStore.ts"

/** What a source feeds: whole kinds (at start, after a relist) and changes. */
export interface PolicySink {
  /** the complete contents of `kinds` now, as of `revision`: what the store held of them is replaced */
  readonly reset: (kinds: ReadonlyArray<PolicyKind>, entries: ReadonlyArray<{ readonly key: string; readonly value: string }>, revision: bigint) => Effect.Effect<void>
  readonly events: (events: ReadonlyArray<KvEvent>) => Effect.Effect<void>
}

export interface PolicySource {
  /** the store keys' prefix */
  readonly prefix: string
  /** the kinds that must have been reset before anything is enforced */
  readonly kinds: ReadonlyArray<PolicyKind>
  /** feeds the sink for ever; fails when it must start over (the caller retries) */
  readonly follow: (sink: PolicySink) => Effect.Effect<never, unknown>
  /** publishes the endpoint of a pod whose ADD this node served, for the other nodes */
  readonly record: (key: string, endpoint: Endpoint) => Effect.Effect<boolean, unknown>
  /** withdraws it, if it still is this container's */
  readonly forget: (key: string, containerID: string) => Effect.Effect<void, unknown>
}

/** etcd: everything under `<prefix>/`, listed at one revision and watched from it. */
export const etcdPolicySource = (kv: KvShape, prefix: string): PolicySource => ({
  prefix,
  kinds: ["namespaces", "pods", "policies", "endpoints"],
  follow: (sink) =>
    Effect.gen(function*() {
      const listed = yield* kv.list(`${prefix}/`)
      yield* sink.reset(["namespaces", "pods", "policies", "endpoints"], listed.entries, listed.revision)
      return yield* kv.watch(`${prefix}/`, listed.revision, sink.events)
    }),
  record: (key, endpoint) => putKey(kv, policyKey(prefix, "endpoints", key), JSON.stringify(endpoint)),
  forget: (key, containerID) =>
    deleteKey(kv, policyKey(prefix, "endpoints", key), (value) => {
      const recorded = decodeEndpoint(value)
      return recorded._tag === "Some" && recorded.value.containerID === containerID
    }).pipe(Effect.asVoid)
})

/** The collections the Kubernetes source follows, and the store kind each becomes. */
const COLLECTIONS: ReadonlyArray<{ readonly kind: PolicyKind; readonly path: string; readonly namespaced: boolean }> = [
  { kind: "namespaces", path: "/api/v1/namespaces", namespaced: false },
  { kind: "pods", path: "/api/v1/pods", namespaced: true },
  { kind: "policies", path: "/apis/networking.k8s.io/v1/networkpolicies", namespaced: true }
]

const metadataOf = (object: unknown): { readonly name?: unknown; readonly namespace?: unknown; readonly resourceVersion?: unknown } =>
  typeof object === "object" && object !== null && typeof (object as { metadata?: unknown }).metadata === "object" ? (object as { metadata: Record<string, unknown> }).metadata : {}

/** A resourceVersion as a revision (they are etcd's revisions; an opaque one counts as 0). */
const revisionOf = (resourceVersion: unknown): bigint => (typeof resourceVersion === "string" && /^\d+$/.test(resourceVersion) ? BigInt(resourceVersion) : 0n)

/**
 * The Kubernetes API: each collection listed, then watched from the list's resourceVersion
 * (bookmarks move it; a watch the server ends is resumed; 410 Gone lists again). A pod's
 * endpoint stays in this agent's memory: kubelet publishes status.podIPs for the others.
 */
export const kubePolicySource = (client: KubeClient): PolicySource => {
  const keyOf = (kind: PolicyKind, namespaced: boolean, object: unknown): string | undefined => {
    const { name, namespace } = metadataOf(object)
    if (typeof name !== "string" || (namespaced && typeof namespace !== "string")) return undefined
    return policyKey("", kind, namespaced ? `${namespace as string}/${name}` : name)
  }
  const followOne = (sink: PolicySink, collection: (typeof COLLECTIONS)[number]) =>
    Effect.gen(function*() {
      for (;;) {
        const list = yield* client.listObjects(collection.path)
        const entries = list.items.flatMap((object) => {
          const key = keyOf(collection.kind, collection.namespaced, object)
          return key === undefined ? [] : [{ key, value: JSON.stringify(object) }]
        })
        yield* sink.reset([collection.kind], entries, revisionOf(list.resourceVersion))
        let resourceVersion = list.resourceVersion
        for (;;) {
          const watched = yield* client.watchObjects(collection.path, resourceVersion, (event) => {
            if (event.type === "BOOKMARK") {
              resourceVersion = event.resourceVersion
              return Effect.void
            }
            const key = keyOf(collection.kind, collection.namespaced, event.object)
            const at = metadataOf(event.object).resourceVersion
            if (typeof at === "string") resourceVersion = at
            if (key === undefined) return Effect.void
            const modRevision = revisionOf(at)
            return sink.events([
              event.type === "DELETED"
                ? { type: "delete", key, modRevision }
                : { type: "put", entry: { key, value: JSON.stringify(event.object), modRevision, lease: undefined } }
            ])
          }).pipe(Effect.as("ended" as const), Effect.catchIf((error) => error.gone, () => Effect.succeed("gone" as const)))
          if (watched === "gone") {
            yield* Effect.sync(() => process.stderr.write(`tscni agent: policy: the watch of ${collection.path} is too old (410 Gone): listing again\n`))
            break
          }
        }
      }
    })
  return {
    prefix: "",
    kinds: ["namespaces", "pods", "policies"],
    follow: (sink) => Effect.all(COLLECTIONS.map((collection) => followOne(sink, collection)), { concurrency: "unbounded" }).pipe(Effect.andThen(Effect.never)),
    record: () => Effect.succeed(true),
    forget: () => Effect.void
  }
}

/** The source as a service, so a datastore's layer provides its own. */
export class PolicySourceService extends Context.Service<PolicySourceService, PolicySource>()("tscni/cluster/PolicySource") {}
