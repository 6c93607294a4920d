/**
 * Fault sweeps of whole bridge ADDs on the mock (config, lock, intent file, pipeline): for
 * every Backend call k of the ADD, a run on a fresh kernel with call k failing must either
 * fail at that very fault and leave kernel, IPAM and lock dir exactly as they were, or —
 * only for the probes of the bridge-nf sysctls — succeed without the probed switch.
 */
import { describe, expect, test } from "bun:test"
import { existsSync } from "node:fs"
import { Effect, Layer } from "effect"
import { Backend, HOST_NETNS } from "@tscni/backend"
import * as MockBackend from "@tscni/backend-mock"
import { handleInvocation } from "@tscni/skel"
import { attachmentEnv } from "@tscni/skel/testing"
import { CONF } from "./fixtures.ts"
import { type FakeIpamRanges, makeFakeIpam } from "@tscni/steps/testing/fakeIpam"
import { makeFakePluginExec } from "@tscni/steps/testing/fakePluginExec"
import { type InvocationSweepReport, invocationFaultSweep } from "@tscni/steps/testing/invocationFaultSweep"
import { masqueradeTable } from "@tscni/steps"
import { bridgeIntentPath, bridgePlugin, hostVethName, ruleOwner } from "../src/index.ts"

type Json = Record<string, any>

const OWNER = ruleOwner("podnet", "c1", "eth0")

const V4: FakeIpamRanges = { v4: "10.88.0" }
const V6: FakeIpamRanges = { v6: "fd00:88::" }
const DUAL: FakeIpamRanges = { v4: "10.88.0", v6: "fd00:88::" }


const env = attachmentEnv
const invoke = (environment: Record<string, string>, conf: Json) =>
  handleInvocation(bridgePlugin, { env: environment, stdin: Effect.succeed(JSON.stringify(conf)) })

/** A fresh mock kernel and fake IPAM per run; observed: the IPAM's allocations and the intent file. */
const world = (ranges: FakeIpamRanges) => () => {
  const ipam = makeFakeIpam(ranges)
  return {
    layer: Layer.mergeAll(MockBackend.layer, makeFakePluginExec({ "fake-ipam": ipam.plugin }).layer),
    observe: () => ({ allocations: [...ipam.allocations()], intent: existsSync(bridgeIntentPath("br-test")) })
  }
}

const pod = (name: string) => Backend.use((backend) => backend.createNetns(name))

/**
 * What every sweep of a bridge ADD must show: no fault is survived (a failed bridge-nf probe
 * fails the ADD like any other fault: only an absent switch is skipped). Every run failed
 * with the CNI error of its own injected fault, no rollback failure attached, and left the
 * kernel, the IPAM and the lock dir as before. The sweep reached a run with no fault left
 * to fire, which succeeded.
 */
const expectCleanSweep = (report: InvocationSweepReport) => {
  const failed = report.runs.filter((run) => run.outcome === "failed")
  expect(failed.length).toBe(report.runs.length)
  expect(failed.length).toBeGreaterThan(20)
  for (const run of failed) {
    // the host switches are ADD's last steps and never put back: only a fault among their
    // own writes can find one already on
    const switchesLeft = run.diff.filter((line) => HOST_SWITCHES.includes(line))
    expect({ k: run.k, error: run.error, diff: run.diff.filter((line) => !switchesLeft.includes(line)), observed: run.observedAfter }).toEqual({
      k: run.k,
      error: { code: 5, msg: run.injected, details: "reason: Injected" },
      diff: [],
      observed: run.observedBefore
    })
    if (switchesLeft.length > 0) expect({ k: run.k, operation: run.operation }).toEqual({ k: run.k, operation: "writeSysctl" })
  }
  expect(report.clean.output.exitCode).toBe(0)
  expect(report.clean.applied.length).toBeGreaterThan(0)
}

/** Host-wide switches a failed ADD may leave on (set last, never put back: see the bridge pipeline). */
const HOST_SWITCHES = [
  "host: ~ sysctl net.ipv4.ip_forward: 0 → 1",
  "host: ~ sysctl net.ipv6.conf.all.forwarding: 0 → 1",
  "host: ~ sysctl net.bridge.bridge-nf-call-iptables: 0 → 1",
  "host: ~ sysctl net.bridge.bridge-nf-call-ip6tables: 0 → 1"
]

/** The pod's netns, and for `staleBridge` an unmarked bridge of that name carrying a stale address. */
const podAndBridge = (staleBridge: boolean) =>
  Effect.gen(function*() {
    const backend = yield* Backend
    const ns = yield* pod("p1")
    if (staleBridge) {
      yield* backend.createLink({ netns: HOST_NETNS, name: "br-test", kind: "bridge" })
      yield* backend.setLink(HOST_NETNS, "br-test", { up: true })
      yield* backend.addAddress(HOST_NETNS, "br-test", "10.88.0.254/24")
    }
    return ns
  })

interface SweepCase {
  readonly label: string
  readonly ranges: FakeIpamRanges
  readonly conf: Json
  /** a bridge of that name exists, unmarked, with a stale address (forceAddress replaces it) */
  readonly staleBridge?: boolean
  /** lines the clean ADD's diff must hold: proof the sweep went through that family's steps */
  readonly made?: ReadonlyArray<string>
  /** how many iptables batches (one per family) ADD restores */
  readonly iptablesBatches?: number
}

const IPV6_MADE = [
  "host: + address br-test fd00:88::1/64",
  "host: ~ sysctl net.ipv6.conf.all.forwarding: 0 → 1",
  "/var/run/netns/p1: + address eth0 fd00:88::2/64",
  "/var/run/netns/p1: + sysctl net.ipv6.conf.eth0.accept_dad = 0",
  "/var/run/netns/p1: + route ::/0 via fd00:88::1 dev eth0 scope universe metric 1024"
]
const IPV4_MADE = [
  "host: + address br-test 10.88.0.1/24",
  "host: ~ sysctl net.ipv4.ip_forward: 0 → 1",
  "/var/run/netns/p1: + address eth0 10.88.0.2/24",
  "/var/run/netns/p1: + route 0.0.0.0/0 via 10.88.0.1 dev eth0 scope universe"
]
const MASQ = masqueradeTable("podnet").name
const NFT_MASQ_V4 = `host: + nft element inet ${MASQ} own4 { 10.88.0.2 . 10.88.0.0/24 } comment "${OWNER}"`
const NFT_MASQ_V6 = `host: + nft element inet ${MASQ} own6 { fd00:88::2 . fd00:88::/64 } comment "${OWNER}"`

describe("bridge ADD fault sweeps on the mock", () => {
  const cases: ReadonlyArray<SweepCase> = [
    // every option that adds steps, and a bridge that exists with a stale address to replace
    { label: "the default chain config", ranges: V4, conf: CONF, made: [...IPV4_MADE, NFT_MASQ_V4] },
    { label: "macspoofchk, promiscMode, portIsolation, mtu", ranges: V4, conf: { ...CONF, macspoofchk: true, promiscMode: true, portIsolation: true, mtu: 1400 } },
    { label: "forceAddress over a stale gateway", ranges: V4, conf: { ...CONF, forceAddress: true }, staleBridge: true },
    { label: "vlan without the default VLAN", ranges: V4, conf: { ...CONF, vlan: 100, preserveDefaultVlan: false } },
    { label: "iptables masquerade", ranges: V4, conf: { ...CONF, ipMasqBackend: "iptables" }, iptablesBatches: 1 },
    // IPv6 only and dual stack, gateway and masquerade on
    { label: "IPv6 only, nftables masquerade", ranges: V6, conf: CONF, made: [...IPV6_MADE, NFT_MASQ_V6] },
    { label: "dual stack, nftables masquerade", ranges: DUAL, conf: CONF, made: [...IPV4_MADE, ...IPV6_MADE, NFT_MASQ_V4, NFT_MASQ_V6] },
    { label: "IPv6 only, iptables masquerade", ranges: V6, conf: { ...CONF, ipMasqBackend: "iptables" }, made: IPV6_MADE, iptablesBatches: 1 },
    { label: "dual stack, iptables masquerade", ranges: DUAL, conf: { ...CONF, ipMasqBackend: "iptables" }, made: [...IPV4_MADE, ...IPV6_MADE], iptablesBatches: 2 }
  ]
  for (const { label, ranges, conf, staleBridge = false, made = [], iptablesBatches = 0 } of cases) {
    test(`every fault during ADD leaves kernel, IPAM and lock dir as they were: ${label}`, async () => {
      const report = await Effect.runPromise(invocationFaultSweep({
        world: world(ranges),
        setup: podAndBridge(staleBridge),
        invoke: (ns) => invoke(env("ADD", "c1", ns), conf)
      }))
      expectCleanSweep(report)
      for (const line of made) expect(report.clean.applied).toContain(line)
      // each family's iptables-restore was faulted once, and that failed the ADD
      expect(report.runs.filter((run) => run.operation === "addIptablesPodChains").map((run) => run.outcome))
        .toEqual(Array.from({ length: iptablesBatches }, () => "failed"))
      const addresses = [...(ranges.v4 !== undefined ? ["10.88.0.2/24"] : []), ...(ranges.v6 !== undefined ? ["fd00:88::2/64"] : [])]
      const result = JSON.parse(report.clean.output.stdout) as Json
      expect((result.ips as Array<Json>).map((ip) => ip.address)).toEqual(addresses)
      expect(report.clean.observedAfter).toEqual({ allocations: [["c1/eth0", addresses.join(",")]], intent: false })
    })
  }
})

/** The first pod on the network, plugged in before the sweep of the second. */
const firstPod = (conf: Json) =>
  Effect.gen(function*() {
    const ns1 = yield* pod("p1")
    const ns2 = yield* pod("p2")
    const add = yield* invoke(env("ADD", "c1", ns1), conf)
    if (add.exitCode !== 0) return yield* Effect.die(new Error(`first pod's ADD failed: ${add.stdout}`))
    return { ns1, ns2, prevResult: JSON.parse(add.stdout) as Json }
  })

describe("bridge ADD fault sweeps on the mock: a second pod on an existing tscni bridge", () => {
  const configs: Array<[string, FakeIpamRanges, Json]> = [
    ["IPv4, nftables masquerade", V4, CONF],
    ["dual stack, nftables masquerade", DUAL, CONF],
    ["dual stack, iptables masquerade", DUAL, { ...CONF, ipMasqBackend: "iptables" }]
  ]
  for (const [label, ranges, conf] of configs) {
    test(`every fault during the second ADD leaves the first pod's bridge, gateways, veth, rules and IP exactly: ${label}`, async () => {
      const report = await Effect.runPromise(invocationFaultSweep({
        world: world(ranges),
        setup: firstPod(conf),
        invoke: ({ ns2 }) => invoke(env("ADD", "c2", ns2), conf),
        // the first pod is still whole by its own CHECK, and still on the bridge
        after: ({ ns1, prevResult }) =>
          Effect.gen(function*() {
            const backend = yield* Backend
            const check = yield* invoke(env("CHECK", "c1", ns1), { ...conf, prevResult })
            const veth = yield* backend.getLink(HOST_NETNS, hostVethName("c1", "eth0"))
            const bridge = yield* backend.getLink(HOST_NETNS, "br-test")
            return {
              check: [check.exitCode, check.stdout],
              vethOnBridge: veth.master === bridge.index && veth.up,
              gateways: (yield* backend.listAddresses(HOST_NETNS, "br-test")).map((a) => a.cidr)
            }
          })
      }))
      expectCleanSweep(report)
      const first = ranges === V4 ? "10.88.0.2/24" : "10.88.0.2/24,fd00:88::2/64"
      const gateways = ranges === V4 ? ["10.88.0.1/24"] : ["10.88.0.1/24", "fd00:88::1/64"]
      for (const run of report.runs) {
        expect({ k: run.k, before: run.observedBefore, after: run.afterResult }).toEqual({
          k: run.k,
          before: { allocations: [["c1/eth0", first]], intent: false },
          after: { check: [0, ""], vethOnBridge: true, gateways }
        })
      }
      // the clean second ADD adopted bridge and gateways: it made only the second pod's things
      expect(report.clean.applied.filter((line) => line.startsWith("host: ") && line.includes("br-test") && !line.includes(hostVethName("c2", "eth0"))))
        .toEqual([])
      expect(report.clean.observedAfter).toEqual({
        allocations: [["c1/eth0", first], ["c2/eth0", first.replaceAll("::2/", "::3/").replace("0.2/", "0.3/")]],
        intent: false
      })
    })
  }
})
