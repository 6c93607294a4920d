import { describe, expect, test } from "bun:test"
import { Effect, Layer } from "effect"
import { Backend } from "@tscni/backend"
import * as MockBackend from "@tscni/backend-mock"
import { handleInvocation } from "@tscni/skel"
import { faultSweep, runsNotFailedAtTheirFault } from "@tscni/steps/testing/faultSweep"
import { invocationFaultSweep, invocationRunsNotFailedAtTheirFault } from "@tscni/steps/testing/invocationFaultSweep"
import { loopbackPipeline, loopbackPlugin } from "../src/index.ts"

const createNs = Backend.use((backend) => backend.createNetns("pod"))
const NS = "/var/run/netns/pod"

const env = (command: string, netns = NS, ifname = "lo") => ({
  CNI_COMMAND: command,
  CNI_CONTAINERID: "c1",
  CNI_NETNS: netns,
  CNI_IFNAME: ifname
})
const conf = (extra: Record<string, unknown> = {}) => JSON.stringify({ cniVersion: "1.0.0", name: "n", type: "loopback", ...extra })

/** Runs one invocation against a kernel the test keeps using. */
const invoke = (env: Record<string, string>, stdin: string) =>
  handleInvocation(loopbackPlugin, { env, stdin: Effect.succeed(stdin) }).pipe(
    Effect.map((outcome) => ({ ...outcome, json: outcome.stdout === "" ? undefined : JSON.parse(outcome.stdout) }))
  )

const onMock = <A, E>(effect: Effect.Effect<A, E, Backend | MockBackend.MockControlService>) =>
  Effect.runPromise(effect.pipe(Effect.provide(MockBackend.layer)))

describe("loopback on the mock kernel", () => {
  test("fault at every backend call leaves the namespace as it was", async () => {
    const report = await Effect.runPromise(
      faultSweep(loopbackPipeline, { netns: NS, ifname: "lo" }, { setup: createNs }).pipe(Effect.provide(Layer.empty))
    )
    expect(report.runs.map((run) => run.failedStep)).toEqual(["linkUp", "linkUp", "linkUp", "linkUp", "readAddresses"])
    expect(runsNotFailedAtTheirFault(report)).toEqual([])
    expect(report.clean.applied.length).toBeGreaterThan(0)
    expect(report.clean.undoDiff).toEqual([])
  })

  test("a fault at every backend call of the whole ADD fails it at that fault and leaves the namespace as it was", async () => {
    const report = await Effect.runPromise(invocationFaultSweep({
      world: () => ({ layer: MockBackend.layer }),
      setup: createNs,
      invoke: () => invoke(env("ADD"), conf())
    }))
    // the loopback check, linkUp (look, remember the addresses, up, see what the kernel
    // added), reading the addresses for the result: nothing is optional
    expect(report.runs.map((run) => run.operation)).toEqual(["getLink", "getLink", "listAddresses", "setLink", "listAddresses", "listAddresses"])
    expect(invocationRunsNotFailedAtTheirFault(report)).toEqual([])
    expect(report.clean.output.exitCode).toBe(0)
    expect(report.clean.applied).toContain(`${NS}: ~ link lo up: false → true`)
  })

  test("ADD brings lo up and reports its addresses; CHECK; DEL takes it down", () =>
    onMock(Effect.gen(function*() {
      const backend = yield* Backend
      yield* createNs
      const add = yield* invoke(env("ADD"), conf())
      expect(add.exitCode).toBe(0)
      expect((yield* backend.getLink(NS, "lo")).up).toBe(true)
      const kernelAddresses = (yield* backend.listAddresses(NS, "lo")).map((a) => a.cidr).sort()
      expect(add.json.ips.map((ip: { address: string }) => ip.address).sort()).toEqual(kernelAddresses)
      expect(add.json.interfaces).toEqual([{ name: "lo", mac: "00:00:00:00:00:00", sandbox: NS }])

      expect((yield* invoke(env("CHECK"), conf({ prevResult: add.json }))).exitCode).toBe(0)
      yield* backend.setLink(NS, "lo", { up: false })
      const broken = yield* invoke(env("CHECK"), conf({ prevResult: add.json }))
      expect(broken.exitCode).toBe(1)
      expect(broken.json.msg).toContain("down")

      yield* backend.setLink(NS, "lo", { up: true })
      expect((yield* invoke(env("DEL"), conf({ prevResult: add.json }))).exitCode).toBe(0)
      expect((yield* backend.getLink(NS, "lo")).up).toBe(false)
    })))

  test("refuses to treat a non-loopback interface as loopback, changing nothing", () =>
    onMock(Effect.gen(function*() {
      const backend = yield* Backend
      const control = yield* MockBackend.MockControlService
      yield* createNs
      yield* backend.createVeth({ netns: NS, name: "eth0", peerNetns: NS, peerName: "eth0p" })
      const before = control.snapshot()
      const add = yield* invoke(env("ADD", NS, "eth0"), conf())
      expect(add.exitCode).toBe(1)
      expect([add.json.code, add.json.msg]).toEqual([4, expect.stringContaining("not a loopback")])
      expect(control.diff(before, control.snapshot())).toEqual([])
    })))

  test("a missing namespace: ADD is code 3; DEL succeeds", () =>
    onMock(Effect.gen(function*() {
      const del = yield* invoke(env("DEL", "/var/run/netns/gone"), conf())
      expect([del.exitCode, del.stdout]).toEqual([0, ""])
      const add = yield* invoke(env("ADD", "/var/run/netns/gone"), conf())
      expect([add.exitCode, add.json.code]).toEqual([1, 3])
    })))
})
