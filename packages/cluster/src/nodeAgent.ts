/**
 * The agent's cluster side (with a datastore configured): lease the node's subnet(s), write
 * the node file, keep both current. It runs until interrupted and never gives up: every
 * failure (datastore out of reach, no cluster config yet, a lost lease) is reported in the
 * status, and the loop tries again with a growing pause (up to 10 s).
 *
 * Stopping (interruption: SIGTERM) releases nothing: the claim stays bound to its lease,
 * which lives out its TTL, and the node file stays, so a restart finds the same subnet and
 * the pods keep working. A node leaves only by `tscni agent leave` or by its lease expiring.
 */
import { Deferred, Effect } from "effect"
import type { Backend } from "@tscni/backend"
import { formatCidr } from "@tscni/ip"
import type { ClusterConfig } from "./config.ts"
import { planHostGw, reconcileRoutes } from "./hostGw.ts"
import { reconcileMasquerade } from "./masquerade.ts"
import { Datastore } from "./datastore.ts"
import type { HeldSubnet } from "./leases.ts"
import { clusterConflist, readNodeFile, writeConflist, writeNodeFile } from "./nodeFile.ts"
import { findUnderlay, type Underlay } from "./underlay.ts"
import { ensureVxlanDevice, removeVxlanDevice, reconcileVxlanEntries, vtepMacOf, vxlanDeviceName, vxlanPeersOf, vxlanRoute } from "./vxlan.ts"

export interface NodeAgentOptions {
  readonly node: string
  readonly nodeFile: string
  /**
   * where to write the cluster's conflist (tscni-net reading the node file, portmap,
   * bandwidth) once the node holds its subnet: the runtime sees no CNI config, and so holds
   * its pods, until the network is ready. undefined: none is written.
   */
  readonly conflist: string | undefined
  /** how often the peers' routes are reconciled even when nothing changed (repairs hand edits) */
  readonly resyncSeconds: number
  readonly iface: string | undefined
  readonly publicIp: string | undefined
  readonly publicIpv6?: string | undefined
}

/** What /readyz and /metrics report. */
export interface NodeStatus {
  /** true once the node holds its subnet(s) and the node file says so */
  readonly ready: boolean
  /** why not, or what it holds */
  readonly detail: string
  readonly subnets: ReadonlyArray<string>
  /** claims made (new, kept or reserved) since the agent started */
  readonly claims: number
  /** times the node's lease or claim was lost and claimed again */
  readonly losses: number
  /** datastore and reconcile failures */
  readonly errors: number
  /** peer subnets routed */
  readonly peers: number
  /** peers the backend cannot reach, and why */
  readonly unreachable: ReadonlyArray<string>
  /** kernel objects the peer reconciles added, changed or removed (0 after a restart that found everything right) */
  readonly changes: number
}

export const initialStatus: NodeStatus = { ready: false, detail: "starting", subnets: [], claims: 0, losses: 0, errors: 0, peers: 0, unreachable: [], changes: 0 }

const MAX_PAUSE_MS = 10_000

/** One round: claim, write the node file, hold until something is lost. Returns why it ended. */
const holdSubnets = (options: NodeAgentOptions, report: Report) =>
  Effect.scoped(Effect.gen(function*() {
    const datastore = yield* Datastore
    const config = yield* datastore.config
    const underlay = yield* findUnderlay({ iface: options.iface, publicIp: options.publicIp, publicIpv6: options.publicIpv6 })
    const previous = (yield* readNodeFile(options.nodeFile))?.subnets ?? []
    // a vxlan or auto node publishes its VTEP MAC (derived from its name: known before its device exists)
    const backend = config.backend.type === "host-gw"
      ? { type: "host-gw" as const }
      : { type: "vxlan" as const, vtepMac: vtepMacOf(options.node, config.backend.vni) }
    const identity = { node: options.node, publicIp: underlay.publicIp, ...(underlay.publicIpv6 === undefined ? {} : { publicIpv6: underlay.publicIpv6 }), backend }
    const hold = yield* datastore.hold(config, identity, previous)
    const held = hold.subnets
    const subnets = held.map((h) => formatCidr(h.subnet))
    const mtu = config.mtu ?? underlay.mtu - (config.backend.type === "host-gw" ? 0 : 50)
    yield* writeNodeFile(options.nodeFile, {
      node: options.node,
      subnets,
      networks: config.networks.map((net) => formatCidr(net.network)),
      mtu,
      backend: config.backend.type
    })
    if (options.conflist !== undefined) yield* writeConflist(options.conflist, clusterConflist(options.nodeFile))
    const how = held.map((h) => `${formatCidr(h.subnet)} (${h.outcome})`).join(", ")
    log(`node ${options.node} holds ${how} on ${underlay.iface} ${underlay.publicIp}; node file ${options.nodeFile}, mtu ${mtu}`)
    report((now) => ({ ready: true, detail: `holds ${how}`, subnets, claims: now.claims + 1 }))
    // the peers are reconciled now, on every change of anyone's subnets, and every resync interval
    let wake = yield* Deferred.make<void>()
    const peers = Effect.gen(function*() {
      for (;;) {
        wake = yield* Deferred.make<void>()
        yield* reconcilePeers(options, config, underlay, held, report)
        yield* Effect.raceFirst(Deferred.await(wake), Effect.sleep(options.resyncSeconds * 1000))
      }
    })
    return yield* Effect.raceFirst(hold.ended, Effect.raceFirst(datastore.changes(Effect.suspend(() => Deferred.succeed(wake, undefined))), peers))
  }))

/**
 * One reconcile of the node's side of the peers, from the claims as the datastore has them
 * now: host-gw routes to the on-link peers (host-gw, auto), the VXLAN device with its
 * neighbour and forwarding entries and onlink routes for the others (vxlan: all of them;
 * auto: those not on-link), and the masquerade of what leaves the cluster network. Failures are reported and counted, never fatal: the next round
 * tries again.
 */
const reconcilePeers = (options: NodeAgentOptions, config: ClusterConfig, underlay: Underlay, held: ReadonlyArray<HeldSubnet>, report: Report) =>
  Effect.gen(function*() {
    const claims = yield* (yield* Datastore).claims(config)
    const type = config.backend.type
    const hostGw = type === "vxlan" ? { routes: [], unreachable: [] } : yield* planHostGw(claims, options.node, underlay.iface)
    // auto: VXLAN for the subnets host-gw cannot route (off the segment, or no underlay address of their family)
    const offLink = new Set(hostGw.unreachable.map((peer) => peer.subnet))
    const overlay = type === "host-gw"
      ? []
      : vxlanPeersOf(claims, options.node).filter((peer) => type === "vxlan" || offLink.has(formatCidr(peer.subnet)))
    const routes = [...hostGw.routes]
    const made: Array<string> = []
    if (type === "host-gw") {
      if (yield* removeVxlanDevice(config.backend.vni)) made.push(`removed ${vxlanDeviceName(config.backend.vni)}: the backend is host-gw`)
    } else {
      const device = yield* ensureVxlanDevice(config, options.node, underlay, held.map((h) => h.subnet))
      made.push(...device.changes, ...(yield* reconcileVxlanEntries(device.name, overlay)))
      routes.push(...overlay.map((peer) => vxlanRoute(device.name, peer)))
    }
    made.push(...(yield* reconcileMasquerade(config)))
    const changes = yield* reconcileRoutes(routes)
    made.push(...changes.removed.map((route) => `removed route ${route}`), ...changes.added.map((route) => `added route ${route}`))
    for (const change of made) log(change)
    const reached = new Set(overlay.map((peer) => formatCidr(peer.subnet)))
    const unreachable = hostGw.unreachable.filter((peer) => !reached.has(peer.subnet)).map((peer) => `${peer.node} (${peer.why})`)
    report((now) => {
      if (unreachable.length > 0 && unreachable.join() !== now.unreachable.join()) log(`${type} cannot reach ${unreachable.join(", ")}`)
      return { peers: routes.length, unreachable, changes: now.changes + made.length }
    })
  }).pipe(
    Effect.catch((error) =>
      Effect.sync(() => {
        log(`reconciling the peers: ${describe(error)}`)
        report((now) => ({ errors: now.errors + 1 }))
      })
    )
  )

/** A status change: the fields that changed, or a function of the status now giving them. */
type Report = (change: Partial<NodeStatus> | ((now: NodeStatus) => Partial<NodeStatus>)) => void

const log = (line: string) => process.stderr.write(`tscni agent: ${line}\n`)

const describe = (error: unknown): string =>
  typeof error === "object" && error !== null && "message" in error && typeof error.message === "string" ? error.message : String(error)

/** Runs the cluster side until interrupted; `report` hears every status change. */
export const runNodeAgent = (options: NodeAgentOptions, onStatus: (status: NodeStatus) => void): Effect.Effect<never, never, Datastore | Backend> =>
  Effect.gen(function*() {
    let status = initialStatus
    const report: Report = (change) => {
      status = { ...status, ...(typeof change === "function" ? change(status) : change) }
      onStatus(status)
    }
    let pause = 200
    for (;;) {
      const ended = yield* holdSubnets(options, (change) => {
        const claimsBefore = status.claims
        report(change)
        // a round that got its claim starts the next failure's pause from the beginning
        if (status.claims > claimsBefore) pause = 200
      }).pipe(Effect.result)
      if (ended._tag === "Success") {
        log(`${ended.success}: claiming again`)
        report({ ready: false, detail: ended.success, losses: status.losses + 1 })
      } else {
        const why = describe(ended.failure)
        log(`${why}: trying again in ${pause} ms`)
        // a node that held its subnet and lost the datastore stays ready: its pods keep working
        report({ detail: why, errors: status.errors + 1 })
        yield* Effect.sleep(pause)
        pause = Math.min(pause * 2, MAX_PAUSE_MS)
      }
    }
  })
