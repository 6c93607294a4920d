/**
 * The agent's NetworkPolicy enforcement (etcd datastore): it lists and watches the
 * cluster's namespaces, pods, policies and pod endpoints under the agent's prefix (the
 * layout: policyStore.ts), compiles them (@tscni/policy) and keeps the node's
 * `inet tscni-policy` table equal to the rendering for this node's pods. The first write
 * after a start replaces the table in one transaction (the old one enforces until then: a
 * restart never opens a window); every later one is the difference, in one transaction. An
 * ADD the agent serves waits until the new pod is enforced before it answers, so the pod is
 * isolated from its first packet.
 */
import { Effect, Queue, Semaphore } from "effect"
import { Backend, type BackendError, HOST_NETNS, type NftChanges } from "@tscni/backend"
import { compile, podKey } from "@tscni/policy/model"
import { diffRulesets, isEmptyChange, POLICY_TABLE, type PolicyRuleset, renderRuleset, tableOf } from "@tscni/policy/nft"
import type { Pod } from "@tscni/policy/objects"
import type { KvEvent } from "./kv.ts"
import type { PolicySink, PolicySource } from "./policySource.ts"
import { type Endpoint, type PolicyKind, PolicyStore } from "./policyStore.ts"

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

const log = (line: string) => Effect.sync(() => process.stderr.write(`tscni agent: policy: ${line}\n`))

export const makePolicyAgent = (
  source: PolicySource,
  node: string,
  onStatus: (status: PolicyStatus) => void
): Effect.Effect<PolicyAgent, never, Backend> =>
  Effect.gen(function*() {
    const backend = yield* Backend
    const state = new PolicyStore(source.prefix)
    /** the datastore revision the state reflects */
    let revision = 0n
    const lock = Semaphore.makeUnsafe(1)
    /** a change waits here for the worker; one slot, so changes arriving meanwhile coalesce */
    const changed = yield* Queue.sliding<void>(1)
    /** what the kernel holds; undefined until the first (replacing) write of this process */
    let applied: PolicyRuleset | undefined
    /** the kinds the source has handed over whole; nothing is enforced before all of them are */
    const synced = new Set<PolicyKind>()

    const isLocal = (pod: Pod) => pod.nodeName === node

    const replaceTable = (wanted: PolicyRuleset) => {
      const { table, elements } = tableOf(wanted)
      return backend.replaceNftTable(HOST_NETNS, table, elements)
    }
    const changeTable = (changes: NftChanges) => (isEmptyChange(changes) ? Effect.void : backend.changeNftTable(HOST_NETNS, POLICY_TABLE, changes))

    /** Makes the kernel table what the state says (the caller holds the lock). */
    const enforce: Effect.Effect<void, BackendError> = Effect.gen(function*() {
      if (!source.kinds.every((kind) => synced.has(kind))) return
      const reflected = revision
      const model = compile(state.world())
      const wanted = renderRuleset(model, isLocal)
      const write = applied === undefined ? replaceTable(wanted) : changeTable(diffRulesets(applied, wanted))
      // after a refused write what the kernel holds is not known for sure (a table deleted by
      // hand, a change half-understood): the next write replaces the whole table, atomically
      yield* write.pipe(Effect.tapError(() => Effect.sync(() => void (applied = undefined))))
      applied = wanted
      const localPods = [...model.world.pods.values()].filter(isLocal).length
      onStatus({ appliedRevision: reflected, policies: model.policies.size, localPods, rejected: [...state.rejected].map(([k, why]) => `${k}: ${why}`) })
    })
    const enforceLocked = lock.withPermits(1)(enforce)

    const onEvents = (events: ReadonlyArray<KvEvent>) =>
      Effect.gen(function*() {
        for (const event of events) {
          if (event.type === "put") state.absorb(event.entry.key, event.entry.value)
          else state.absorb(event.key, undefined)
          const at = event.type === "put" ? event.entry.modRevision : event.modRevision
          if (at > revision) revision = at
        }
        for (const [key, why] of state.rejected) if (events.some((e) => (e.type === "put" ? e.entry.key : e.key) === key)) yield* log(`${key} is not enforced: ${why}`)
        // the worker enforces once for every change that arrived while it was busy
        yield* Queue.offer(changed, undefined)
      })

    /** Enforces the state whenever it changed: a burst of changes costs one compile and one transaction. */
    const worker = Effect.forever(
      Queue.take(changed).pipe(
        // a failed write is retried by the next change or the caller's restart; said, not fatal here
        Effect.andThen(enforceLocked.pipe(Effect.catch((error) => log(`enforcing: ${error.message}`))))
      )
    )

    const reset: PolicySink["reset"] = (kinds, entries, at) =>
      lock.withPermits(1)(Effect.gen(function*() {
        state.clear(kinds)
        for (const entry of entries) state.absorb(entry.key, entry.value)
        for (const [key, why] of state.rejected) if (entries.some((entry) => entry.key === key)) yield* log(`${key} is not enforced: ${why}`)
        if (at > revision) revision = at
        for (const kind of kinds) synced.add(kind)
        yield* enforce.pipe(Effect.catch((error) => log(`enforcing: ${error.message}`)))
      }))

    const run: PolicyAgent["run"] = Effect.scoped(Effect.gen(function*() {
      yield* Effect.forkScoped(worker)
      return yield* source.follow({ reset, events: onEvents })
    }))

    /** Publishes the endpoint record (etcd); the watch brings it back to the state. */
    const record = (key: string, endpoint: Endpoint) =>
      Effect.gen(function*() {
        if (!(yield* source.record(key, endpoint))) yield* log(`could not record ${key}'s endpoint: it kept changing`)
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
        // only this container's record: a newer sandbox of the same pod may have replaced it
        yield* source.forget(key, containerID)
      })

    return { run, attached, detached }
  })
