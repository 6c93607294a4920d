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
import { Deferred, Effect, Schema } from "effect"
import type { Backend } from "@tscni/backend"
import { formatCidr } from "@tscni/ip"
import { decodeClusterConfig } from "./config.ts"
import { Kv } from "./kv.ts"
import { claimSubnets, type HeldSubnet, subnetsPrefix } from "./leases.ts"
import { readNodeFile, writeNodeFile } from "./nodeFile.ts"
import { subnetKey } from "./subnets.ts"
import { findUnderlay } from "./underlay.ts"

export interface NodeAgentOptions {
  readonly node: string
  /** the datastore prefix: `<prefix>/config`, `<prefix>/subnets/…` */
  readonly prefix: string
  readonly nodeFile: string
  readonly leaseTtlSeconds: number
  readonly iface: string | undefined
  readonly publicIp: string | undefined
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
}

export const initialStatus: NodeStatus = { ready: false, detail: "starting", subnets: [], claims: 0, losses: 0, errors: 0 }

/** The loop's reasons to start over (each is reported, then retried). */
class LeaseLost extends Schema.TaggedError<LeaseLost>()("LeaseLost", { message: Schema.String }) {}

const MAX_PAUSE_MS = 10_000

const readConfig = (prefix: string) =>
  Effect.gen(function*() {
    const kv = yield* Kv
    const key = `${prefix}/config`
    const { entries } = yield* kv.list(key)
    const entry = entries.find((candidate) => candidate.key === key)
    if (entry === undefined) return yield* new LeaseLost({ message: `no cluster config at ${key} in the datastore` })
    return yield* decodeClusterConfig(entry.value)
  })

/** The node a claim's value names; undefined when it names none. */
const ownerOf = (value: string): string | undefined => {
  try {
    const parsed: unknown = JSON.parse(value)
    return typeof parsed === "object" && parsed !== null && "node" in parsed && typeof parsed.node === "string" ? parsed.node : undefined
  } catch {
    return undefined
  }
}

/**
 * Succeeds (with why) when the node's claims are gone or no longer its own (deleted by
 * hand or by `leave`, expired, taken over), watched from the revision they were verified at;
 * fails when the watch breaks.
 */
const claimsGone = (prefix: string, node: string, held: ReadonlyArray<HeldSubnet>) =>
  Effect.gen(function*() {
    const kv = yield* Kv
    const keys = new Set(held.map((h) => `${subnetsPrefix(prefix)}${subnetKey(h.subnet)}`))
    const { entries, revision } = yield* kv.list(subnetsPrefix(prefix))
    const missing = [...keys].filter((key) => !entries.some((entry) => entry.key === key && ownerOf(entry.value) === node))
    if (missing.length > 0) return `claim ${missing.join(", ")} changed while it was being made`
    const gone = yield* Deferred.make<string>()
    const watching = kv.watch(subnetsPrefix(prefix), revision, (events) =>
      Effect.forEach(events, (event) => {
        const key = event.type === "put" ? event.entry.key : event.key
        if (!keys.has(key)) return Effect.void
        if (event.type === "delete") return Deferred.succeed(gone, `claim ${key} was deleted`)
        return ownerOf(event.entry.value) === node ? Effect.void : Deferred.succeed(gone, `claim ${key} was taken over`)
      }, { discard: true })
    )
    return yield* Effect.raceFirst(Deferred.await(gone), watching)
  })

/** One round: claim, write the node file, hold until something is lost. Returns why it ended. */
const holdSubnets = (options: NodeAgentOptions, report: (status: Partial<NodeStatus>) => void) =>
  Effect.scoped(Effect.gen(function*() {
    const kv = yield* Kv
    const config = yield* readConfig(options.prefix)
    const underlay = yield* findUnderlay({ iface: options.iface, publicIp: options.publicIp })
    const lease = yield* kv.lease(options.leaseTtlSeconds)
    const previous = (yield* readNodeFile(options.nodeFile))?.subnets ?? []
    const backendType = config.backend.type === "host-gw" ? "host-gw" : "vxlan"
    const held = yield* claimSubnets(kv, options.prefix, config, {
      node: options.node,
      publicIp: underlay.publicIp,
      backend: { type: backendType }
    }, lease.id, previous)
    const subnets = held.map((h) => formatCidr(h.subnet))
    const mtu = config.mtu ?? underlay.mtu - (config.backend.type === "host-gw" ? 0 : 50)
    yield* writeNodeFile(options.nodeFile, {
      node: options.node,
      subnets,
      networks: config.networks.map((net) => formatCidr(net.network)),
      mtu,
      backend: config.backend.type
    })
    const how = held.map((h) => `${formatCidr(h.subnet)} (${h.outcome})`).join(", ")
    log(`node ${options.node} holds ${how} on ${underlay.iface} ${underlay.publicIp}; node file ${options.nodeFile}, mtu ${mtu}`)
    report({ ready: true, detail: `holds ${how}`, subnets })
    return yield* Effect.raceFirst(
      lease.lost.pipe(Effect.as(`lease ${lease.id} was lost (expired while the datastore was out of reach)`)),
      claimsGone(options.prefix, options.node, held)
    )
  }))

const log = (line: string) => process.stderr.write(`tscni agent: ${line}\n`)

const describe = (error: unknown): string =>
  typeof error === "object" && error !== null && "message" in error && typeof error.message === "string" ? error.message : String(error)

/** Runs the cluster side until interrupted; `report` hears every status change. */
export const runNodeAgent = (options: NodeAgentOptions, onStatus: (status: NodeStatus) => void): Effect.Effect<never, never, Kv | Backend> =>
  Effect.gen(function*() {
    let status = initialStatus
    const report = (change: Partial<NodeStatus>) => {
      status = { ...status, ...change }
      onStatus(status)
    }
    let pause = 200
    for (;;) {
      const ended = yield* holdSubnets(options, (change) => {
        report({ ...change, claims: status.claims + 1 })
        pause = 200
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
