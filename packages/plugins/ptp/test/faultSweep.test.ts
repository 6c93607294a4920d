/**
 * Fault sweeps of whole ptp ADDs on the mock (config, IPAM, pipeline): for every Backend call
 * k of the ADD, a run on a fresh kernel with call k failing must fail at that very fault and
 * leave kernel and IPAM exactly as they were (only a fault among the forwarding switches'
 * own writes may find one of them on: they are set last and never put back).
 */
import { describe, expect, test } from "bun:test"
import { Effect, Layer } from "effect"
import { Backend, HOST_NETNS } from "@tscni/backend"
import * as MockBackend from "@tscni/backend-mock"
import { handleInvocation } from "@tscni/skel"
import { attachmentEnv } from "@tscni/skel/testing"
import { masqueradeTable } from "@tscni/steps"
import { type FakeIpamRanges, makeFakeIpam } from "@tscni/steps/testing/fakeIpam"
import { makeFakePluginExec } from "@tscni/steps/testing/fakePluginExec"
import { type InvocationSweepReport, invocationFaultSweep } from "@tscni/steps/testing/invocationFaultSweep"
import { CONF } from "./fixtures.ts"
import { hostVethName, ptpPlugin, ruleOwner } from "../src/index.ts"

type Json = Record<string, any>

const V4: FakeIpamRanges = { v4: "10.88.0" }
const V6: FakeIpamRanges = { v6: "fd00:88::" }
const DUAL: FakeIpamRanges = { v4: "10.88.0", v6: "fd00:88::" }

const env = attachmentEnv
const invoke = (environment: Record<string, string>, conf: Json) =>
  handleInvocation(ptpPlugin, { env: environment, stdin: Effect.succeed(JSON.stringify(conf)) })

/** A fresh mock kernel and fake IPAM per run; observed: the IPAM's allocations. */
const world = (ranges: FakeIpamRanges) => () => {
  const ipam = makeFakeIpam(ranges)
  return {
    layer: Layer.mergeAll(MockBackend.layer, makeFakePluginExec({ "fake-ipam": ipam.plugin }).layer),
    observe: () => ({ allocations: [...ipam.allocations()] })
  }
}

const pod = (name: string) => Backend.use((backend) => backend.createNetns(name))

/** The forwarding switches a failed ADD may leave on (set last, never put back: hostSwitch in @tscni/steps). */
const HOST_SWITCHES = ["host: ~ sysctl net.ipv4.ip_forward: 0 → 1", "host: ~ sysctl net.ipv6.conf.all.forwarding: 0 → 1"]

/**
 * What every sweep of a ptp ADD must show: no fault is survived; every run failed with the
 * CNI error of its own injected fault, no rollback failure attached, and left the kernel and
 * the IPAM as before (a forwarding switch only after a fault among those writes). The sweep
 * reached a run with no fault left to fire, which succeeded.
 */
const expectCleanSweep = (report: InvocationSweepReport) => {
  expect(report.runs.length).toBeGreaterThan(15)
  for (const run of report.runs) {
    const switchesLeft = run.diff.filter((line) => HOST_SWITCHES.includes(line))
    expect({ k: run.k, outcome: run.outcome, error: run.error, diff: run.diff.filter((line) => !switchesLeft.includes(line)), observed: run.observedAfter }).toEqual({
      k: run.k,
      outcome: "failed",
      error: { code: 5, msg: run.injected, details: "reason: Injected" },
      diff: [],
      observed: run.observedBefore
    })
    if (switchesLeft.length > 0) expect({ k: run.k, operation: run.operation }).toEqual({ k: run.k, operation: "writeSysctl" })
  }
  expect(report.clean.output.exitCode).toBe(0)
}

const VETH = hostVethName("c1", "eth0")
const OWNER = ruleOwner("podnet", "c1", "eth0")
const MASQ = masqueradeTable("podnet").name
const P1 = "/var/run/netns/p1"
/** Lines the clean ADD's diff must hold: proof the sweep went through that family's steps. */
const IPV4_MADE = [
  `${P1}: + address eth0 10.88.0.2/24`,
  `${P1}: + route 10.88.0.1/32 dev eth0 scope link src 10.88.0.2`,
  `${P1}: + route 10.88.0.0/24 via 10.88.0.1 dev eth0 scope universe src 10.88.0.2`,
  `host: + address ${VETH} 10.88.0.1/32`,
  `host: + route 10.88.0.2/32 dev ${VETH} scope host`,
  "host: ~ sysctl net.ipv4.ip_forward: 0 → 1"
]
const IPV6_MADE = [
  `${P1}: + address eth0 fd00:88::2/64`,
  `${P1}: + route fd00:88::/64 via fd00:88::1 dev eth0 scope universe metric 1024 src fd00:88::2`,
  `host: + sysctl net.ipv6.conf.${VETH}.accept_dad = 0`,
  `host: + address ${VETH} fd00:88::1/128`,
  `host: + route fd00:88::2/128 dev ${VETH} scope universe metric 1024`,
  "host: ~ sysctl net.ipv6.conf.all.forwarding: 0 → 1"
]
const NFT_V4 = `host: + nft element inet ${MASQ} own4 { 10.88.0.2 . 10.88.0.0/24 } comment "${OWNER}"`
const NFT_V6 = `host: + nft element inet ${MASQ} own6 { fd00:88::2 . fd00:88::/64 } comment "${OWNER}"`

describe("ptp ADD fault sweeps on the mock", () => {
  const cases: ReadonlyArray<{ label: string; ranges: FakeIpamRanges; conf: Json; made: ReadonlyArray<string>; iptablesBatches?: number }> = [
    { label: "IPv4, nftables masquerade, mtu", ranges: V4, conf: CONF, made: [...IPV4_MADE, NFT_V4] },
    { label: "IPv6 only, nftables masquerade", ranges: V6, conf: CONF, made: [...IPV6_MADE, NFT_V6] },
    { label: "dual stack, nftables masquerade", ranges: DUAL, conf: CONF, made: [...IPV4_MADE, ...IPV6_MADE, NFT_V4, NFT_V6] },
    { label: "dual stack, iptables masquerade", ranges: DUAL, conf: { ...CONF, ipMasqBackend: "iptables" }, made: [...IPV4_MADE, ...IPV6_MADE], iptablesBatches: 2 },
    { label: "dual stack, no masquerade", ranges: DUAL, conf: { ...CONF, ipMasq: false }, made: [...IPV4_MADE, ...IPV6_MADE] }
  ]
  for (const { label, ranges, conf, made, iptablesBatches = 0 } of cases) {
    test(`every fault during ADD leaves kernel and IPAM as they were: ${label}`, async () => {
      const report = await Effect.runPromise(invocationFaultSweep({
        world: world(ranges),
        setup: pod("p1"),
        invoke: (ns) => invoke(env("ADD", "c1", ns), conf)
      }))
      expectCleanSweep(report)
      for (const line of made) expect(report.clean.applied).toContain(line)
      // each family's iptables-restore was faulted once, and that failed the ADD
      expect(report.runs.filter((run) => run.operation === "addIptablesPodChains").length).toBe(iptablesBatches)
      // the kernel's route to the pod network was dropped by the clean run, and each sweep faulted that drop
      expect(report.clean.applied.filter((line) => line.includes(`${P1}: + route`) && line.includes("/24 dev eth0"))).toEqual([])
      expect(report.runs.filter((run) => run.operation === "deleteRoute").length).toBe(ranges === DUAL ? 2 : 1)
      const addresses = [...(ranges.v4 !== undefined ? ["10.88.0.2/24"] : []), ...(ranges.v6 !== undefined ? ["fd00:88::2/64"] : [])]
      expect(report.clean.observedAfter).toEqual({ allocations: [["c1/eth0", addresses.join(",")]] })
    })
  }
})

describe("ptp ADD fault sweeps on the mock: a second pod of the network", () => {
  for (const [label, conf] of [["nftables masquerade", CONF], ["iptables masquerade", { ...CONF, ipMasqBackend: "iptables" }]] as const) {
    test(`every fault during the second ADD leaves the first pod whole by its own CHECK, and its IP: dual stack, ${label}`, async () => {
      const report = await Effect.runPromise(invocationFaultSweep({
        world: world(DUAL),
        setup: Effect.gen(function*() {
          const ns1 = yield* pod("p1")
          const ns2 = yield* pod("p2")
          const add = yield* invoke(env("ADD", "c1", ns1), conf)
          if (add.exitCode !== 0) return yield* Effect.die(new Error(`first pod's ADD failed: ${add.stdout}`))
          return { ns1, ns2, prevResult: JSON.parse(add.stdout) as Json }
        }),
        invoke: ({ ns2 }) => invoke(env("ADD", "c2", ns2), conf),
        after: ({ ns1, prevResult }) =>
          Effect.gen(function*() {
            const backend = yield* Backend
            const check = yield* invoke(env("CHECK", "c1", ns1), { ...conf, prevResult })
            return { check: [check.exitCode, check.stdout], gateways: (yield* backend.listAddresses(HOST_NETNS, VETH)).map((a) => a.cidr) }
          })
      }))
      expectCleanSweep(report)
      for (const run of report.runs) {
        expect({ k: run.k, before: run.observedBefore, after: run.afterResult }).toEqual({
          k: run.k,
          before: { allocations: [["c1/eth0", "10.88.0.2/24,fd00:88::2/64"]] },
          after: { check: [0, ""], gateways: ["10.88.0.1/32", "fd00:88::1/128"] }
        })
      }
      // the second pod's host end has the same gateways
      expect(report.clean.applied).toContain(`host: + address ${hostVethName("c2", "eth0")} 10.88.0.1/32`)
    })
  }
})
