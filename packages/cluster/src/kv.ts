/**
 * The key-value store the etcd datastore is written against: the few etcd v3 operations
 * leases need (compare-and-swap by revision, keys bound to an expiring lease, a watch from a
 * revision), as a service with two implementations: etcd itself (etcdKv.ts) and an
 * in-memory fake with a hand-driven clock (memoryKv.ts), held to one contract suite
 * (kvContract.ts) so the fake cannot drift from etcd.
 */
import { Context, type Effect, Schema, type Scope } from "effect"

/** A store call failed (unreachable, timed out, refused): retried by the caller, never fatal on its own. */
export class KvError extends Schema.TaggedError<KvError>()("KvError", {
  operation: Schema.String,
  message: Schema.String
}) {}

export interface KvEntry {
  readonly key: string
  readonly value: string
  /** the store revision of the key's last change: what compare-and-swap compares */
  readonly modRevision: bigint
  /** the expiring lease the key is bound to; undefined: it never expires */
  readonly lease: string | undefined
}

export type KvEvent =
  | { readonly type: "put"; readonly entry: KvEntry }
  | { readonly type: "delete"; readonly key: string; readonly modRevision: bigint }

/** A lease kept alive until its scope closes or it is lost (expired while the store was out of reach). */
export interface KvLease {
  readonly id: string
  /** resolves when the lease is lost: its keys are gone or going */
  readonly lost: Effect.Effect<void>
}

export interface KvShape {
  /** every key under `prefix`, and the revision they were read at */
  readonly list: (prefix: string) => Effect.Effect<{ readonly entries: ReadonlyArray<KvEntry>; readonly revision: bigint }, KvError>
  /** writes `key` if it does not exist; false when it does */
  readonly createIfAbsent: (key: string, value: string, lease?: string) => Effect.Effect<boolean, KvError>
  /** rewrites `key` (and its lease binding) if it still is at `modRevision`; false when it changed or is gone */
  readonly replaceIf: (key: string, modRevision: bigint, value: string, lease?: string) => Effect.Effect<boolean, KvError>
  /** deletes `key` if it still is at `modRevision`; false when it changed or is gone */
  readonly deleteIf: (key: string, modRevision: bigint) => Effect.Effect<boolean, KvError>
  /** a lease of `ttlSeconds`, kept alive while the scope is open and revoked never (a stopped agent's keys live out their TTL) */
  readonly lease: (ttlSeconds: number) => Effect.Effect<KvLease, KvError, Scope.Scope>
  /**
   * Calls `onEvents` with every change under `prefix` after `fromRevision`, in order, while
   * it runs (fork it; interrupting it ends the watch). Fails when the store can no longer
   * say what happened since then (compacted, or the watch broke): the caller lists again.
   */
  readonly watch: (
    prefix: string,
    fromRevision: bigint,
    onEvents: (events: ReadonlyArray<KvEvent>) => Effect.Effect<void>
  ) => Effect.Effect<never, KvError>
}

export class Kv extends Context.Service<Kv, KvShape>()("tscni/cluster/Kv") {}
