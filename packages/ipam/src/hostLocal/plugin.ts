/**
 * host-local: one address per range set from a store on local disk, shared safely by
 * concurrent invocations through the store's lock. A drop-in for the reference plugin
 * (same config, same on-disk format and lock), plus GC, STATUS and reboot reclaim.
 */
import { Effect } from "effect"
import { formatIp, type Ip, parseCidr, sameIp } from "@tscni/ip"
import type { PluginDefinition, PluginRequest } from "@tscni/skel"
import {
  type CniError,
  ioFailure,
  notAvailable,
  type Result,
  tryAgainLater,
  validAttachments
} from "@tscni/spec"
import { allocationFailed, checkFailed } from "../errors.ts"
import { type Candidate, candidates, capacity, describeSet, rangeFor } from "./allocate.ts"
import {
  type HostLocalConfig,
  loadHostLocalConfig,
  type RangeSet,
  type RequestedIp,
  requestedTexts,
  resolveRequested
} from "./config.ts"
import { readResolvConf } from "./resolvConf.ts"
import { type Allocation, IpamStore, type NetworkStore, type Owner, ownedBy, type StoreError } from "./store.ts"

const NAME = "host-local"

/** A busy lock is worth retrying (code 11); any other store failure is IO (code 5). */
const storeErrorToCni = (error: StoreError): CniError =>
  error.busy === true
    ? tryAgainLater(`${NAME}: ${error.message}`)
    : ioFailure(`${NAME}: ${error.operation} ${error.path}: ${error.message}`)

const ownerOf = (request: PluginRequest): Owner => ({
  containerId: request.env.containerId,
  ifname: request.env.ifname
})

const inSomeSet = (config: HostLocalConfig, ip: Ip): boolean =>
  config.rangeSets.some((set) => rangeFor(set, ip) !== undefined)

const describeOwner = (allocation: Allocation): string =>
  allocation.ifname === undefined ? allocation.containerId : `${allocation.containerId}/${allocation.ifname}`

/**
 * Reboot reclaim. The reference leaks every allocation across a reboot, because no DEL
 * ever comes for pods that died with the node. The store records the boot it was last
 * written in (`boot_id`); when ADD or GC finds a different boot, no pod of that boot can
 * still exist, so all its allocations and round-robin positions are released before
 * anything else. A store without `boot_id` (new, or written by the reference plugin before
 * an upgrade on a running node) is adopted as this boot's, releasing nothing. Where the
 * boot id is unknown (no /proc), nothing is reclaimed.
 */
export const reclaimAfterReboot = (store: NetworkStore, currentBootId: string | undefined) =>
  Effect.gen(function*() {
    if (currentBootId === undefined) return
    const recorded = yield* store.bootId
    if (recorded === currentBootId) return
    if (recorded !== undefined) {
      const stale = yield* store.allocations
      yield* store.release(stale.map((allocation) => allocation.ip))
      yield* store.forgetLastReserved
      yield* Effect.logInfo(`${NAME}: released ${stale.length} allocation(s) of the previous boot in ${store.dir}`)
    }
    yield* store.setBootId(currentBootId)
  })

interface Allocated {
  readonly set: RangeSet
  readonly candidate: Candidate
}

/**
 * Picks one address per range set for `owner` and reserves them all at once, under the
 * lock. An attachment that already holds an address in a set keeps it (a repeated ADD is
 * idempotent instead of the reference's "duplicate allocation" error, so an ADD the runtime
 * retries without DEL leaks nothing).
 */
const allocateAll = (
  store: NetworkStore,
  config: HostLocalConfig,
  requested: ReadonlyMap<number, RequestedIp>,
  owner: Owner
) =>
  Effect.gen(function*() {
    // what the attachment holds, from its index entry (one it has not has none: an attachment
    // the reference or an older tscni allocated, ADDed again without DEL, gets a second
    // address instead of the reference's "duplicate allocation" error); whether an address is
    // free, from its file: no call reads every allocation
    const mine = (yield* store.allocationsOf(owner)) ?? []
    const picked = new Map<string, Allocation>()
    const holderOf = (ip: Ip) => (picked.has(formatIp(ip)) ? Effect.succeed(picked.get(formatIp(ip))) : store.isTaken(ip))
    const chosen: Array<Allocated> = []
    const picks: Array<{ ip: Ip; setIndex: number }> = []
    for (const set of config.rangeSets) {
      const wanted = requested.get(set.index)
      const existing = mine.find((allocation) => rangeFor(set, allocation.ip) !== undefined)
      if (existing !== undefined) {
        if (wanted !== undefined && !sameIp(wanted.ip, existing.ip)) {
          return yield* allocationFailed(
            `requested IP ${formatIp(wanted.ip)} (${wanted.field}) but ${describeOwner(existing)} already holds ${
              formatIp(existing.ip)
            } in range set ${set.field}`
          )
        }
        chosen.push({ set, candidate: { ip: existing.ip, range: rangeFor(set, existing.ip)! } })
        continue
      }
      let candidate: Candidate | undefined
      if (wanted !== undefined) {
        const holder = yield* holderOf(wanted.ip)
        if (holder !== undefined) {
          return yield* allocationFailed(
            `requested IP address ${formatIp(wanted.ip)} is already allocated to ${describeOwner(holder)}`
          )
        }
        candidate = { ip: wanted.ip, range: rangeFor(set, wanted.ip)! }
      } else {
        const last = yield* store.lastReserved(set.index)
        for (const next of candidates(set, last)) {
          if ((yield* holderOf(next.ip)) === undefined) {
            candidate = next
            break
          }
        }
        if (candidate === undefined) {
          return yield* allocationFailed(`no IP addresses available in range set ${set.field}: ${describeSet(set)}`)
        }
      }
      picked.set(formatIp(candidate.ip), { ip: candidate.ip, containerId: owner.containerId, ifname: owner.ifname })
      chosen.push({ set, candidate })
      picks.push({ ip: candidate.ip, setIndex: set.index })
    }
    const conflict = yield* store.reserve(owner, picks)
    if (conflict !== undefined) {
      return yield* allocationFailed(`IP address ${formatIp(conflict)} is already allocated`)
    }
    return chosen
  })

const toResult = (request: PluginRequest, config: HostLocalConfig, allocated: ReadonlyArray<Allocated>, dns: Result["dns"]) => {
  const result: Result = {
    cniVersion: request.conf.cniVersion,
    ips: allocated.map(({ candidate }) => ({
      address: `${formatIp(candidate.ip)}/${candidate.range.subnet.prefix}`,
      gateway: formatIp(candidate.range.gateway)
    })),
    ...(config.routes.length > 0 ? { routes: config.routes } : {}),
    ...(dns !== undefined ? { dns } : {})
  }
  return result
}

const add = (request: PluginRequest) =>
  Effect.gen(function*() {
    // everything that can be wrong with the request is found before the store is touched
    const config = yield* loadHostLocalConfig(request.conf)
    const requested = yield* resolveRequested(config, yield* requestedTexts(request))
    const dns = config.resolvConf === undefined ? undefined : yield* readResolvConf(config.resolvConf)
    const stores = yield* IpamStore
    const bootId = yield* stores.currentBootId
    const store = stores.network(config.dataDir, config.network)
    const allocated = yield* store.locked(
      Effect.gen(function*() {
        yield* reclaimAfterReboot(store, bootId)
        return yield* allocateAll(store, config, requested, ownerOf(request))
      })
    )
    return toResult(request, config, allocated, dns)
  })

/** Releases every address of the attachment, whatever set it came from; nothing to release is fine. */
const del = (request: PluginRequest) =>
  Effect.gen(function*() {
    const config = yield* loadHostLocalConfig(request.conf)
    const store = (yield* IpamStore).network(config.dataDir, config.network)
    if (!(yield* store.exists)) return
    yield* store.locked(
      Effect.gen(function*() {
        // the owner's index entry when it has one; else (a store the reference wrote, a DEL
        // repeated, an ADD killed before its entry) every file is read
        const owner = ownerOf(request)
        const mine = (yield* store.allocationsOf(owner)) ?? ownedBy(yield* store.allocations, owner)
        yield* store.release(mine.map((allocation) => allocation.ip))
      })
    )
  })

/**
 * The attachment holds exactly one address in every range set, and the addresses of
 * prevResult that fall in the configured ranges are exactly those.
 */
const check = (request: PluginRequest) =>
  Effect.gen(function*() {
    const config = yield* loadHostLocalConfig(request.conf)
    const owner = ownerOf(request)
    const who = `${owner.containerId}/${owner.ifname}`
    const store = (yield* IpamStore).network(config.dataDir, config.network)
    const all = (yield* store.exists) ? yield* store.locked(store.allocations) : []
    const mine = ownedBy(all, owner).filter((allocation) => inSomeSet(config, allocation.ip))
    if (mine.length === 0) return yield* checkFailed(NAME, `no address is allocated to ${who} in network ${config.network}`)
    for (const set of config.rangeSets) {
      const held = mine.filter((allocation) => rangeFor(set, allocation.ip) !== undefined)
      if (held.length !== 1) {
        return yield* checkFailed(NAME, `${who} holds ${held.length} addresses in range set ${set.field}, expected 1`)
      }
    }
    const reported = (request.prevResult?.ips ?? [])
      .map((entry) => parseCidr(entry.address)?.ip)
      .filter((ip): ip is Ip => ip !== undefined && inSomeSet(config, ip))
    for (const allocation of mine) {
      if (!reported.some((ip) => sameIp(ip, allocation.ip))) {
        return yield* checkFailed(NAME, `${formatIp(allocation.ip)} is allocated to ${who} but missing from prevResult`)
      }
    }
    for (const ip of reported) {
      if (!mine.some((allocation) => sameIp(allocation.ip, ip))) {
        return yield* checkFailed(NAME, `prevResult has ${formatIp(ip)}, which is not allocated to ${who}`)
      }
    }
  })

/**
 * Releases every allocation whose attachment the runtime no longer lists, after the
 * reboot reclaim. A GC without a valid-attachment list releases nothing: the list is what
 * makes releasing safe, and its absence is more likely a runtime bug than "nothing is valid".
 */
const gc = (request: PluginRequest) =>
  Effect.gen(function*() {
    const config = yield* loadHostLocalConfig(request.conf)
    const valid = validAttachments(request.conf)
    const stores = yield* IpamStore
    const bootId = yield* stores.currentBootId
    const store = stores.network(config.dataDir, config.network)
    if (!(yield* store.exists)) return
    yield* store.locked(
      Effect.gen(function*() {
        yield* reclaimAfterReboot(store, bootId)
        if (valid === undefined) return
        const stale = (yield* store.allocations).filter((allocation) =>
          !valid.some((attachment) =>
            attachment.containerID.trim() === allocation.containerId &&
            (allocation.ifname === undefined || attachment.ifname === allocation.ifname)
          )
        )
        yield* store.release(stale.map((allocation) => allocation.ip))
        // index entries whose addresses another plugin released (GC reads every file anyway)
        yield* store.dropStaleEntries
      })
    )
  })

/**
 * Ready when the store can be written and every range set has a free address. Read-only:
 * it takes no lock and creates nothing; allocations of a previous boot count as free, since
 * the next ADD reclaims them.
 */
const status = (request: PluginRequest) =>
  Effect.gen(function*() {
    const config = yield* loadHostLocalConfig(request.conf)
    const stores = yield* IpamStore
    const store = stores.network(config.dataDir, config.network)
    const problem = yield* store.writableProblem
    if (problem !== undefined) return yield* notAvailable(`${NAME}: cannot write the store: ${problem}`)
    let all: ReadonlyArray<Allocation> = []
    if (yield* store.exists) {
      const current = yield* stores.currentBootId
      const recorded = yield* store.bootId
      const rebooted = current !== undefined && recorded !== undefined && recorded !== current
      if (!rebooted) all = yield* store.allocations
    }
    for (const set of config.rangeSets) {
      const used = all.filter((allocation) =>
        rangeFor(set, allocation.ip) !== undefined && !set.ranges.some((range) => sameIp(range.gateway, allocation.ip))
      ).length
      if (BigInt(used) >= capacity(set)) {
        return yield* notAvailable(`${NAME}: no free addresses in range set ${set.field} (${describeSet(set)})`)
      }
    }
  })

const withStoreErrors = <A, R>(effect: Effect.Effect<A, CniError | StoreError, R>): Effect.Effect<A, CniError, R> =>
  effect.pipe(Effect.catchTag("IpamStoreError", (error) => Effect.fail(storeErrorToCni(error))))

/** host-local as a PluginDefinition: the binary runs it, and other plugins can run it in-process. */
export const hostLocalPlugin: PluginDefinition<IpamStore> = {
  name: NAME,
  cniArgs: ["IP"],
  add: (request) => withStoreErrors(add(request)),
  check: (request) => withStoreErrors(check(request)),
  del: (request) => withStoreErrors(del(request)),
  gc: (request) => withStoreErrors(gc(request)),
  status: (request) => withStoreErrors(status(request))
}
