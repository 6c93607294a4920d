/**
 * The etcd datastore: the cluster config at `<prefix>/config`, the node's subnets claimed
 * as leases under `<prefix>/subnets/` (leases.ts), held while an etcd lease is kept alive.
 */
import { Deferred, Effect, Layer, Schema } from "effect"
import { decodeClusterConfig } from "./config.ts"
import { Datastore, type DatastoreShape } from "./datastore.ts"
import { Kv, type KvShape } from "./kv.ts"
import { claimsIn, claimSubnets, decodeClaimValue, subnetsPrefix } from "./leases.ts"
import { subnetKey } from "./subnets.ts"

/** Nothing to hold yet (no config) or the hold could not be verified: said, then retried. */
class NotYet extends Schema.TaggedError<NotYet>()("NotYet", { message: Schema.String }) {}

/** The node a claim's value names (decoded as claimsIn decodes it); undefined when it is no claim. */
const ownerOf = (value: string): string | undefined => decodeClaimValue(value)?.node

export const etcdDatastore = (kv: KvShape, prefix: string, options: { readonly leaseTtlSeconds: number; readonly endpoints: string }): DatastoreShape => ({
  describe: `etcd ${options.endpoints}, prefix ${prefix}`,
  config: Effect.gen(function*() {
    const key = `${prefix}/config`
    const { entries } = yield* kv.list(key)
    const entry = entries.find((candidate) => candidate.key === key)
    if (entry === undefined) return yield* new NotYet({ message: `no cluster config at ${key} in the datastore` })
    return yield* decodeClusterConfig(entry.value)
  }),
  hold: (config, identity, previous) =>
    Effect.gen(function*() {
      const lease = yield* kv.lease(options.leaseTtlSeconds)
      const held = yield* claimSubnets(kv, prefix, config, identity, lease.id, previous)
      // the claims, watched from the revision they were verified at: gone or taken over ends the hold
      const keys = new Set(held.map((h) => `${subnetsPrefix(prefix)}${subnetKey(h.subnet)}`))
      const { entries, revision } = yield* kv.list(subnetsPrefix(prefix))
      const missing = [...keys].filter((key) => !entries.some((entry) => entry.key === key && ownerOf(entry.value) === identity.node))
      const gone = yield* Deferred.make<string>()
      if (missing.length > 0) yield* Deferred.succeed(gone, `claim ${missing.join(", ")} changed while it was being made`)
      const watching = kv.watch(subnetsPrefix(prefix), revision, (events) =>
        Effect.forEach(events, (event) => {
          const key = event.type === "put" ? event.entry.key : event.key
          if (!keys.has(key)) return Effect.void
          if (event.type === "delete") return Deferred.succeed(gone, `claim ${key} was deleted`)
          return ownerOf(event.entry.value) === identity.node ? Effect.void : Deferred.succeed(gone, `claim ${key} was taken over`)
        }, { discard: true }))
      const ended = Effect.raceFirst(
        Effect.raceFirst(Deferred.await(gone), watching),
        lease.lost.pipe(Effect.as(`lease ${lease.id} was lost (expired while the datastore was out of reach)`))
      )
      return { subnets: held, ended }
    }),
  claims: (config) =>
    kv.list(subnetsPrefix(prefix)).pipe(Effect.map(({ entries }) => config.networks.flatMap((net) => claimsIn(net, prefix, entries)))),
  changes: (onChange) =>
    Effect.gen(function*() {
      const { revision } = yield* kv.list(subnetsPrefix(prefix))
      return yield* kv.watch(subnetsPrefix(prefix), revision, () => onChange)
    })
})

/** The etcd datastore as a layer over the Kv service. */
export const etcdDatastoreLayer = (prefix: string, options: { readonly leaseTtlSeconds: number; readonly endpoints: string }): Layer.Layer<Datastore, never, Kv> =>
  Layer.effect(Datastore)(Effect.gen(function*() {
    return etcdDatastore(yield* Kv, prefix, options)
  }))
