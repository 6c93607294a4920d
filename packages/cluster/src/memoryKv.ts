/**
 * The Kv service in memory, for unit tests of what is built on it: etcd's semantics
 * (revisions, compare-and-swap, keys bound to leases, ordered watches) with the test in
 * charge of time. A lease lives until its scope closes and the test expires it
 * (`expireLease`: its keys are deleted and its holder hears it was lost, as when etcd was out
 * of reach longer than the TTL), and watches break when the test says so (`breakWatches`,
 * as a compaction does). Held to the same contract suite as etcd (kvContract.ts).
 */
import { Deferred, Effect } from "effect"
import { KvError, type KvEntry, type KvEvent, type KvShape } from "./kv.ts"

interface Watch {
  readonly prefix: string
  readonly deliver: (events: ReadonlyArray<KvEvent>) => void
  readonly fail: (error: KvError) => void
}

export interface MemoryKv {
  readonly kv: KvShape
  /** the lease ends as if its TTL ran out unrenewed: its keys go, its holder's `lost` resolves */
  readonly expireLease: (id: string) => void
  /** every running watch fails, as when etcd compacted past it */
  readonly breakWatches: () => void
  /** leases granted and not yet expired or released */
  readonly liveLeases: () => ReadonlyArray<string>
}

export const makeMemoryKv = (): MemoryKv => {
  const entries = new Map<string, KvEntry>()
  const leases = new Map<string, { lost: Deferred.Deferred<void> }>()
  const watches = new Set<Watch>()
  let revision = 1n
  let nextLease = 1000

  // every change, for watches that start in the past (etcd keeps history until compaction)
  const history: Array<{ readonly revision: bigint; readonly events: ReadonlyArray<KvEvent> }> = []
  const keyOf = (event: KvEvent) => (event.type === "put" ? event.entry.key : event.key)
  const publish = (events: ReadonlyArray<KvEvent>) => {
    history.push({ revision, events })
    for (const watch of watches) {
      const mine = events.filter((event) => keyOf(event).startsWith(watch.prefix))
      if (mine.length > 0) watch.deliver(mine)
    }
  }
  const put = (key: string, value: string, lease: string | undefined) => {
    revision++
    const entry = { key, value, modRevision: revision, lease }
    entries.set(key, entry)
    publish([{ type: "put", entry }])
  }
  const remove = (keys: ReadonlyArray<string>) => {
    if (keys.length === 0) return
    revision++
    for (const key of keys) entries.delete(key)
    publish(keys.map((key) => ({ type: "delete", key, modRevision: revision })))
  }
  const leaseKnown = (lease: string | undefined) =>
    lease === undefined || leases.has(lease) ? Effect.void : Effect.fail(new KvError({ operation: "put", message: `requested lease not found: ${lease}` }))

  const kv: KvShape = {
    list: (prefix) =>
      Effect.sync(() => ({
        entries: [...entries.values()].filter((entry) => entry.key.startsWith(prefix)).sort((a, b) => (a.key < b.key ? -1 : 1)),
        revision
      })),
    createIfAbsent: (key, value, lease) =>
      leaseKnown(lease).pipe(Effect.andThen(Effect.sync(() => {
        if (entries.has(key)) return false
        put(key, value, lease)
        return true
      }))),
    replaceIf: (key, modRevision, value, lease) =>
      leaseKnown(lease).pipe(Effect.andThen(Effect.sync(() => {
        if (entries.get(key)?.modRevision !== modRevision) return false
        put(key, value, lease)
        return true
      }))),
    deleteIf: (key, modRevision) =>
      Effect.sync(() => {
        if (entries.get(key)?.modRevision !== modRevision) return false
        remove([key])
        return true
      }),
    lease: () =>
      Effect.acquireRelease(
        Effect.gen(function*() {
          const id = String(nextLease++)
          const lost = yield* Deferred.make<void>()
          leases.set(id, { lost })
          return { id, lost: Deferred.await(lost) }
        }),
        // released, not revoked: the keys stay until the test expires the lease
        () => Effect.void
      ),
    watch: (prefix, fromRevision, onEvents) =>
      Effect.callback<never, KvError>((resume) => {
        let queue: Promise<unknown> = Promise.resolve()
        const watch: Watch = {
          prefix,
          deliver: (events) => {
            queue = queue.then(() => Effect.runPromise(onEvents(events)))
          },
          fail: (error) => {
            watches.delete(watch)
            resume(Effect.fail(error))
          }
        }
        for (const past of history) {
          const mine = past.revision > fromRevision ? past.events.filter((event) => keyOf(event).startsWith(prefix)) : []
          if (mine.length > 0) watch.deliver(mine)
        }
        watches.add(watch)
        return Effect.sync(() => void watches.delete(watch))
      })
  }

  return {
    kv,
    expireLease: (id) => {
      const lease = leases.get(id)
      if (lease === undefined) return
      leases.delete(id)
      remove([...entries.values()].filter((entry) => entry.lease === id).map((entry) => entry.key))
      Effect.runSync(Deferred.succeed(lease.lost, undefined))
    },
    breakWatches: () => {
      for (const watch of [...watches]) watch.fail(new KvError({ operation: "watch", message: "watch broken by the test" }))
    },
    liveLeases: () => [...leases.keys()]
  }
}
