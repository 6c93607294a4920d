import { describe, expect, test } from "bun:test"
import { Cause, Effect, Exit } from "effect"
import { Backend, BackendError, HOST_NETNS } from "@tscni/backend"
import { Pipeline } from "@tscni/engine"
import {
  addAddress,
  addRoute,
  attachToBridge,
  createNetns,
  ensureBridge,
  ipamAllocate,
  linkUp,
  setSysctl,
  vethPair
} from "../src/index.ts"
import { faultSweep } from "../src/testing/faultSweep.ts"
import { makeFakeIpam } from "../src/testing/fakeIpam.ts"
import { makeFakePluginExec } from "../src/testing/fakePluginExec.ts"
import { control, failureOf, onKernel } from "./harness.ts"

interface PodNetwork {
  readonly pod: string
  readonly bridge: string
  readonly hostVeth: string
  readonly ifname: string
  readonly address: string
  readonly gateway: string
  readonly prefix: number
}

/** Every network step, in the order a bridge plugin (plus the runtime's netns) uses them. */
const podPipeline = Pipeline.make<PodNetwork>("pod-network")
  .step("netns", createNetns, (input) => ({ name: input.pod }))
  .step("bridge", ensureBridge, (input) => ({ netns: HOST_NETNS, name: input.bridge }))
  .step("veth", vethPair, (input, h) => ({
    netns: HOST_NETNS,
    name: input.hostVeth,
    peerNetns: h.netns.path,
    peerName: input.ifname
  }))
  .step("port", attachToBridge, (_, h) => ({ netns: HOST_NETNS, link: h.veth.name, bridge: h.bridge.name, hairpin: true }))
  .step("hostUp", linkUp, (_, h) => ({ netns: HOST_NETNS, link: h.veth.name }))
  .step("podUp", linkUp, (_, h) => ({ netns: h.netns.path, link: h.veth.peer.name }))
  .step("podAddress", addAddress, (input, h) => ({
    netns: h.netns.path,
    link: h.veth.peer.name,
    cidr: `${input.address}/${input.prefix}`
  }))
  .step("gatewayAddress", addAddress, (input, h) => ({
    netns: HOST_NETNS,
    link: h.bridge.name,
    cidr: `${input.gateway}/${input.prefix}`
  }))
  .step("defaultRoute", addRoute, (input, h) => ({
    netns: h.netns.path,
    route: { dst: "0.0.0.0/0", gateway: input.gateway, link: h.veth.peer.name }
  }))
  .step("forwarding", setSysctl, () => ({ netns: HOST_NETNS, key: "net.ipv4.ip_forward", value: "1" }))

const pod: PodNetwork = {
  pod: "pod1",
  bridge: "cni0",
  hostVeth: "veth1234",
  ifname: "eth0",
  address: "10.88.0.2",
  gateway: "10.88.0.1",
  prefix: 24
}

describe("pipeline of every network step", () => {
  test("a fault at every Backend call k leaves the kernel exactly as before; the clean run undoes exactly", () => {
    const report = Effect.runSync(faultSweep(podPipeline, pod))
    // every step is reached by some k, and each fails on an injected fault
    expect([...new Set(report.runs.map((run) => run.failedStep))]).toEqual([
      "createNetns", "ensureBridge", "vethPair", "attachToBridge", "linkUp", "addAddress", "addRoute", "setSysctl"
    ])
    expect(report.runs.length).toBe(report.clean.k - 1)
    for (const run of report.runs) {
      expect({ k: run.k, outcome: run.outcome, diff: run.diff, rollback: run.rollbackIncomplete }).toEqual({
        k: run.k, outcome: "failed", diff: [], rollback: undefined
      })
      expect(run.error).toMatchObject({ _tag: "BackendError", reason: "Injected" })
    }
    // the last fault hits the last step
    expect(report.runs.at(-1)?.failedStep).toBe("setSysctl")
    expect(report.runs.at(-1)?.appliedSteps).toEqual([
      "createNetns", "ensureBridge", "vethPair", "attachToBridge", "linkUp", "linkUp", "addAddress", "addAddress", "addRoute"
    ])
    expect(report.clean.applied.length).toBeGreaterThan(0)
    expect(report.clean.undoDiff).toEqual([])
    expect(report.clean.undoError).toBeUndefined()
    expect(report.clean.handles.gatewayAddress.created).toBe(true)
  })

  test("a second pod adopts the bridge and its gateway; undoing it leaves the first pod intact", () => {
    onKernel(Effect.gen(function*() {
      const mock = yield* control
      const first = yield* Pipeline.apply(podPipeline, pod)
      const afterFirst = mock.snapshot()
      const second = yield* Pipeline.apply(podPipeline, { ...pod, pod: "pod2", hostVeth: "veth5678", address: "10.88.0.3" })
      expect([second.bridge.created, second.gatewayAddress.created]).toEqual([false, false])
      yield* Pipeline.check(podPipeline, first)
      yield* Pipeline.check(podPipeline, second)
      yield* Pipeline.undo(podPipeline, second)
      expect(mock.diff(afterFirst, mock.snapshot())).toEqual([])
      yield* Pipeline.check(podPipeline, first)
    }))
  })

  test("Pipeline.check reports CheckFailed after a manual change", () => {
    onKernel(Effect.gen(function*() {
      const handles = yield* Pipeline.apply(podPipeline, pod)
      yield* Backend.use((backend) => backend.setLink(HOST_NETNS, pod.hostVeth, { master: null }))
      const error = failureOf(yield* Effect.exit(Pipeline.check(podPipeline, handles)))
      expect(error).toMatchObject({ _tag: "CheckFailed", step: "attachToBridge" })
    }))
  })

  test("when an undo fails during rollback, the original error is reported, with RollbackIncomplete in the Cause", () => {
    onKernel(Effect.gen(function*() {
      const mock = yield* control
      const before = mock.snapshot()
      mock.failWhen((call) => call.operation === "addRoute")
      mock.failWhen((call) => call.operation === "deleteNetns", "Busy")
      const exit = yield* Effect.exit(Pipeline.apply(podPipeline, pod))
      mock.clearFaults()
      expect(Exit.isFailure(exit)).toBe(true)
      if (!Exit.isFailure(exit)) return
      expect(failureOf(exit)).toMatchObject({ _tag: "BackendError", operation: "addRoute", reason: "Injected" })
      const rollback = exit.cause.reasons.flatMap((reason) =>
        reason._tag === "Die" && reason.defect instanceof Pipeline.RollbackIncomplete ? [reason.defect] : []
      )
      expect(rollback.map((r) => r.failures.map((f) => f.step))).toEqual([["netns"]])
      expect(Cause.hasFails(exit.cause)).toBe(true)
      // everything but the namespace (whose undo failed) was rolled back
      const residue = mock.diff(before, mock.snapshot())
      expect(residue[0]).toBe("+ netns /var/run/netns/pod1")
      expect(residue.filter((line) => !line.startsWith("/var/run/netns/pod1: + link lo ") &&
        !line.startsWith("/var/run/netns/pod1: + sysctl ") && !line.startsWith("+ netns"))).toEqual([])
    }))
  })
})

describe("faultSweep", () => {
  test("reports residue when a step's apply is not atomic", () => {
    // A deliberately broken step: creates a link, then fails on a second call without cleaning up.
    const leaky = {
      ...ensureBridge,
      name: "leakyBridge",
      apply: (input: { readonly netns: string; readonly name: string }) =>
        Effect.gen(function*() {
          const backend = yield* Backend
          const created = yield* backend.createLink({ netns: input.netns, name: input.name, kind: "bridge" })
          yield* backend.setLink(input.netns, input.name, { up: true })
          return { netns: input.netns, name: input.name, index: created.index, mac: created.mac, created: true }
        })
    }
    const pipeline = Pipeline.make<{ readonly name: string }>("leaky").step("bridge", leaky, (input) => ({
      netns: HOST_NETNS,
      name: input.name
    }))
    const report = Effect.runSync(faultSweep(pipeline, { name: "br0" }))
    expect(report.runs.map((run) => [run.k, run.failedStep, run.faultedOperation, run.diff.length > 0])).toEqual([
      [1, "leakyBridge", "createLink", false],
      [2, "leakyBridge", "setLink", true]
    ])
    expect(report.clean.k).toBe(3)
  })

  test("setup runs on every fresh kernel before the snapshot", () => {
    const pipeline = Pipeline.make<{ readonly netns: string }>("up").step("up", linkUp, (input) => ({
      netns: input.netns,
      link: "lo"
    }))
    const report = Effect.runSync(faultSweep(pipeline, { netns: "/var/run/netns/pre" }, {
      setup: Backend.use((backend) => backend.createNetns("pre")),
      reason: "Busy"
    }))
    expect(report.runs.map((run) => [run.k, run.failedStep, run.diff])).toEqual([
      [1, "linkUp", []],
      [2, "linkUp", []],
      [3, "linkUp", []],
      [4, "linkUp", []]
    ])
    expect(report.runs.map((run) => run.error instanceof BackendError ? run.error.reason : undefined)).toEqual(
      ["Busy", "Busy", "Busy", "Busy"]
    )
    expect(report.clean.applied).toContain("/var/run/netns/pre: ~ link lo up: false → true")
    expect(report.clean.undoDiff).toEqual([])
  })
})

describe("faultSweep with a delegated IPAM step", () => {
  test("every failed apply also releases the IPAM allocation (observed before/after each run)", () => {
    const ipam = makeFakeIpam()
    const exec = makeFakePluginExec({ "fake-ipam": ipam.plugin })
    const pipeline = Pipeline.make<{ readonly containerId: string }>("ipam-then-address")
      .step("netns", createNetns, (input) => ({ name: input.containerId }))
      .step("ipam", ipamAllocate, (input, h) => ({
        pluginType: "fake-ipam",
        config: { cniVersion: "1.0.0", name: "net1", type: "bridge", ipam: { type: "fake-ipam" } },
        cniVersion: "1.0.0",
        containerId: input.containerId,
        netns: h.netns.path,
        ifname: "eth0",
        args: "",
        cniPath: "/opt/cni/bin"
      }))
      .step("lo", linkUp, (_, h) => ({ netns: h.netns.path, link: "lo" }))
      .step("address", addAddress, (_, h) => ({
        netns: h.netns.path,
        link: "lo",
        cidr: h.ipam.result.ips?.[0]?.address ?? "invalid"
      }))
    const report = Effect.runSync(
      faultSweep(pipeline, { containerId: "ctr1" }, { observe: Effect.sync(() => [...ipam.allocations()]) }).pipe(
        Effect.provide(exec.layer)
      )
    )
    expect(report.runs.map((run) => run.failedStep)).toEqual([
      "createNetns", "linkUp", "linkUp", "linkUp", "linkUp", "addAddress", "addAddress"
    ])
    for (const run of report.runs) {
      expect({ k: run.k, diff: run.diff, allocations: run.observedAfter }).toEqual({ k: run.k, diff: [], allocations: [] })
    }
    expect(report.clean.handles.ipam.result.ips?.[0]?.address).toBe("10.88.0.2/24")
    expect(report.clean.undoDiff).toEqual([])
    expect(report.clean.observedAfter).toEqual([])
    // ADD+DEL for every run that got past the IPAM step, then ADD+DEL of the clean run and its undo
    expect(exec.calls().filter((call) => call.command === "ADD").length).toBe(report.runs.length - 1 + 1)
  })
})
