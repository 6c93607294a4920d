/**
 * The Kv service on etcd v3, through the npm `etcd3` client (gRPC; its watch and lease
 * keep-alive streams proven under Bun, compiled too: docs/adr/0006-etcd-client.md).
 * Compare-and-swap is an etcd transaction on the key's create/mod revision, as flannel
 * does it; a lease is etcd's, kept alive by the client's keep-alive stream.
 */
import { Etcd3, type IKeyValue, type IWatchResponse } from "etcd3"
import { Effect, Layer } from "effect"
import { Kv, KvError, type KvEntry, type KvEvent, type KvShape } from "./kv.ts"

const describe = (error: unknown): string => (error instanceof Error ? error.message : String(error))

const call = <A>(operation: string, run: () => Promise<A>): Effect.Effect<A, KvError> =>
  Effect.tryPromise({ try: run, catch: (error) => new KvError({ operation, message: describe(error) }) })

/** etcd's "no lease" is lease 0. */
const leaseOf = (kv: IKeyValue): string | undefined => (kv.lease === undefined || String(kv.lease) === "0" ? undefined : String(kv.lease))

const entryOf = (kv: IKeyValue): KvEntry => ({
  key: kv.key.toString(),
  value: kv.value.toString(),
  modRevision: BigInt(String(kv.mod_revision)),
  lease: leaseOf(kv)
})

const eventsOf = (response: IWatchResponse): ReadonlyArray<KvEvent> =>
  response.events.map((event): KvEvent =>
    event.type === "Delete"
      ? { type: "delete", key: event.kv.key.toString(), modRevision: BigInt(String(event.kv.mod_revision)) }
      : { type: "put", entry: entryOf(event.kv) }
  )

/** The Kv shape over one etcd client. */
export const etcdKv = (client: Etcd3): KvShape => ({
  list: (prefix) =>
    call("list", () => client.getAll().prefix(prefix).exec()).pipe(
      Effect.map((response) => ({ entries: response.kvs.map(entryOf), revision: BigInt(String(response.header.revision)) }))
    ),
  createIfAbsent: (key, value, lease) =>
    call("create", () => {
      const put = client.put(key).value(value)
      return client.if(key, "Create", "==", 0).then(lease === undefined ? put : put.lease(lease)).commit()
    }).pipe(Effect.map((response) => response.succeeded)),
  replaceIf: (key, modRevision, value, lease) =>
    call("replace", () => {
      const put = client.put(key).value(value)
      return client.if(key, "Mod", "==", modRevision.toString()).then(lease === undefined ? put : put.lease(lease)).commit()
    }).pipe(Effect.map((response) => response.succeeded)),
  deleteIf: (key, modRevision) =>
    call("delete", () => client.if(key, "Mod", "==", modRevision.toString()).then(client.delete().key(key)).commit()).pipe(
      Effect.map((response) => response.succeeded)
    ),
  lease: (ttlSeconds) =>
    Effect.acquireRelease(
      Effect.gen(function*() {
        const lease = client.lease(ttlSeconds, { autoKeepAlive: true })
        // the lease is lost when a keep-alive finds it gone (it expired while etcd was out of reach)
        const lost = Effect.callback<void>((resume) => {
          lease.on("lost", () => resume(Effect.void))
        })
        const id = yield* call("lease", () => lease.grant()).pipe(Effect.onError(() => Effect.sync(() => lease.release())))
        return { lease, handle: { id, lost } }
      }),
      // released, not revoked: a stopped agent's lease lives out its TTL (a restart finds it)
      ({ lease }) => Effect.sync(() => lease.release())
    ).pipe(Effect.map(({ handle }) => handle)),
  watch: (prefix, fromRevision, onEvents) =>
    Effect.callback<never, KvError>((resume) => {
      let stopped = false
      const started = client.watch().prefix(prefix).startRevision((fromRevision + 1n).toString()).create()
      const watcher = started.then((w) => {
        // in order: each response's events are applied before the next response's
        let applying: Promise<unknown> = Promise.resolve()
        w.on("data", (response) => {
          const events = eventsOf(response)
          if (events.length > 0) applying = applying.then(() => Effect.runPromise(onEvents(events)))
        })
        w.on("error", (error) => {
          if (!stopped) resume(Effect.fail(new KvError({ operation: "watch", message: describe(error) })))
        })
        return w
      }, (error: unknown) => {
        resume(Effect.fail(new KvError({ operation: "watch", message: describe(error) })))
        return undefined
      })
      // cancelled without waiting for etcd's answer: with etcd out of reach it never comes,
      // and a stopping agent must not wait for it
      return Effect.sync(() => {
        stopped = true
        void watcher.then((w) => w?.cancel()).catch(() => undefined)
      })
    })
})

/** Connection settings for the etcd datastore. */
export interface EtcdOptions {
  readonly endpoints: ReadonlyArray<string>
}

/** The Kv layer on etcd: one client for the layer's lifetime, closed with it. */
export const etcdKvLayer = (options: EtcdOptions): Layer.Layer<Kv> =>
  Layer.effect(Kv)(
    Effect.acquireRelease(
      Effect.sync(() => new Etcd3({ hosts: [...options.endpoints] })),
      (client) => Effect.sync(() => client.close())
    ).pipe(Effect.map(etcdKv))
  )
