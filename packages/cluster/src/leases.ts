/**
 * Subnet leases in the key-value store: `<prefix>/subnets/<subnet key>` holds one node's
 * claim on one node subnet, as JSON (`node`, `publicIp`, `backend`). A claim bound to an
 * expiring store lease is a lease: it goes when its node stops renewing it, and only then
 * may another node take the subnet. A claim bound to none is a reservation: it never
 * expires, and its node always gets that subnet.
 *
 * Claiming is compare-and-swap, so two nodes never hold one subnet: a new claim is created
 * only if the key is absent (flannel's `if Version(key)==0 then Put`), an existing one is
 * rewritten only at the revision it was read at.
 */
import { Effect, Schema } from "effect"
import { type Cidr, formatCidr, parseCidr, type IpFamily } from "@tscni/ip"
import type { ClusterConfig, PodNetwork } from "./config.ts"
import type { KvEntry, KvError, KvShape } from "./kv.ts"
import { freeSubnets, isNodeSubnet, subnetKey, subnetOfKey } from "./subnets.ts"

/** What a node publishes about itself with its subnet: where its pods are reached. */
export const LeaseRecord = Schema.Struct({
  node: Schema.String,
  /** the node's underlay address: host-gw routes via it, VXLAN sends to it */
  publicIp: Schema.optionalKey(Schema.String),
  /** its IPv6 underlay address, when it has one: host-gw routes IPv6 subnets via it */
  publicIpv6: Schema.optionalKey(Schema.String),
  backend: Schema.optionalKey(Schema.Struct({
    /** what this node speaks: `vxlan` nodes also answer host-gw peers on their L2 segment */
    type: Schema.Literals(["host-gw", "vxlan"]),
    /** the node's VXLAN device MAC (stable across restarts) */
    vtepMac: Schema.optionalKey(Schema.String)
  }))
})
export type LeaseRecord = typeof LeaseRecord.Type

/** A node's claim on one subnet, as read from the store. */
export interface SubnetClaim {
  readonly subnet: Cidr
  readonly record: LeaseRecord
  /** true for a reservation (bound to no expiring lease) */
  readonly reserved: boolean
  readonly key: string
  readonly modRevision: bigint
}

/** No subnet can be had: every one is held, or the node's reservation does not fit the network. */
export class LeaseError extends Schema.TaggedError<LeaseError>()("LeaseError", {
  message: Schema.String
}) {}

/** The store prefix under which subnet claims live. */
export const subnetsPrefix = (prefix: string): string => `${prefix}/subnets/`

const decodeRecord = Schema.decodeUnknownOption(LeaseRecord)

/** A claim's value decoded; undefined when it is not JSON or not a LeaseRecord. */
export const decodeClaimValue = (value: string): LeaseRecord | undefined => {
  let json: unknown
  try {
    json = JSON.parse(value)
  } catch {
    return undefined
  }
  const record = decodeRecord(json)
  return record._tag === "None" ? undefined : record.value
}

/** The claims among `entries` on node subnets of `net` (others, and undecodable values, are not claims). */
export const claimsIn = (net: PodNetwork, prefix: string, entries: ReadonlyArray<KvEntry>): ReadonlyArray<SubnetClaim> =>
  entries.flatMap((entry) => {
    const subnet = subnetOfKey(net, entry.key.slice(subnetsPrefix(prefix).length))
    const record = subnet === undefined ? undefined : decodeClaimValue(entry.value)
    if (subnet === undefined || record === undefined) return []
    return [{ subnet, record, reserved: entry.lease === undefined, key: entry.key, modRevision: entry.modRevision }]
  })

/** The record a node writes: its own name, address and backend data. */
export interface NodeIdentity {
  readonly node: string
  readonly publicIp: string
  readonly publicIpv6?: string | undefined
  readonly backend: NonNullable<LeaseRecord["backend"]>
}

const recordOf = (identity: NodeIdentity): LeaseRecord => ({
  node: identity.node,
  publicIp: identity.publicIp,
  ...(identity.publicIpv6 === undefined ? {} : { publicIpv6: identity.publicIpv6 }),
  backend: identity.backend
})

const sameRecord = (a: LeaseRecord, b: LeaseRecord): boolean => JSON.stringify(a) === JSON.stringify(b)

/**
 * What one family's claim came from: the node's reservation, its lease found again, a new
 * one, or (Kubernetes) the subnet the cluster assigned.
 */
export type ClaimOutcome = "reserved" | "kept" | "new" | "assigned"

export interface HeldSubnet {
  readonly family: IpFamily
  readonly subnet: Cidr
  readonly outcome: ClaimOutcome
}

/** How many times a claim is retried after losing a race with another node before giving up for now. */
const MAX_RACES = 16

/**
 * Claims one subnet of `net` for the node, bound to store lease `lease`: its reservation if
 * it has one; else the claim it already holds (an agent restart: moved to the new lease, so
 * the subnet is the same and never free in between); else `previous` (the subnet the node
 * had before, from its node file) if free; else the lowest free subnet.
 */
export const claimSubnet = (
  kv: KvShape,
  prefix: string,
  net: PodNetwork,
  identity: NodeIdentity,
  lease: string,
  previous: Cidr | undefined
): Effect.Effect<HeldSubnet, KvError | LeaseError> =>
  Effect.gen(function*() {
    const record = recordOf(identity)
    const value = JSON.stringify(record)
    for (let race = 0; race < MAX_RACES; race++) {
      const { entries } = yield* kv.list(subnetsPrefix(prefix))
      const claims = claimsIn(net, prefix, entries)
      const mine = claims.filter((claim) => claim.record.node === identity.node)
      const reservation = mine.find((claim) => claim.reserved)
      const held = reservation ?? mine[0]
      if (held !== undefined) {
        // a reservation stays unbound; a lease moves to this run's store lease
        const rewritten = held.reserved && sameRecord(held.record, record) ? true : yield* kv.replaceIf(held.key, held.modRevision, value, held.reserved ? undefined : lease)
        if (!rewritten) continue
        // a node holds one subnet per family: drop any other leases it has (never a reservation)
        for (const extra of mine) if (extra !== held && !extra.reserved) yield* kv.deleteIf(extra.key, extra.modRevision)
        return { family: net.family, subnet: held.subnet, outcome: held.reserved ? "reserved" : "kept" }
      }
      const taken = new Set(claims.map((claim) => subnetKey(claim.subnet)))
      // keys that are not claims (undecodable values) still hold their subnet: never overwrite them
      for (const entry of entries) taken.add(entry.key.slice(subnetsPrefix(prefix).length))
      const wanted = previous !== undefined && isNodeSubnet(net, previous) && !taken.has(subnetKey(previous)) ? previous : undefined
      const candidate = wanted ?? freeSubnets(net, taken).next().value
      if (candidate === undefined) {
        return yield* new LeaseError({ message: `no free /${net.subnetLen} in ${formatCidr(net.network)}: all ${taken.size} are held` })
      }
      if (yield* kv.createIfAbsent(`${subnetsPrefix(prefix)}${subnetKey(candidate)}`, value, lease)) {
        return { family: net.family, subnet: candidate, outcome: "new" }
      }
      // another node took it between the list and the create: look again
    }
    return yield* new LeaseError({ message: `lost the race for a subnet of ${formatCidr(net.network)} ${MAX_RACES} times in a row` })
  })

/** One subnet per family of the cluster config, in the config's order (IPv4 first). */
export const claimSubnets = (
  kv: KvShape,
  prefix: string,
  config: ClusterConfig,
  identity: NodeIdentity,
  lease: string,
  previous: ReadonlyArray<string>
): Effect.Effect<ReadonlyArray<HeldSubnet>, KvError | LeaseError> =>
  Effect.forEach(config.networks, (net) => {
    const before = previous.map(parseCidr).find((cidr) => cidr !== undefined && isNodeSubnet(net, cidr))
    return claimSubnet(kv, prefix, net, identity, lease, before)
  })

/**
 * Removes the node's leases (`tscni agent leave`): every peer then removes its routes.
 * Reservations stay (they are the operator's). Returns the subnets released.
 */
export const releaseSubnets = (kv: KvShape, prefix: string, config: ClusterConfig, node: string): Effect.Effect<ReadonlyArray<Cidr>, KvError> =>
  Effect.gen(function*() {
    const { entries } = yield* kv.list(subnetsPrefix(prefix))
    const released: Array<Cidr> = []
    for (const net of config.networks) {
      for (const claim of claimsIn(net, prefix, entries)) {
        if (claim.record.node === node && !claim.reserved && (yield* kv.deleteIf(claim.key, claim.modRevision))) released.push(claim.subnet)
      }
    }
    return released
  })

