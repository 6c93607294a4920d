import { describe, expect, test } from "bun:test"
import { Effect } from "effect"
import { Backend, HOST_NETNS } from "@tscni/backend"
import * as MockBackend from "@tscni/backend-mock"
import { attachmentEnv, invokePlugin } from "@tscni/skel/testing"
import { faultSweep, runsNotFailedAtTheirFault } from "@tscni/steps/testing/faultSweep"
import { invocationFaultSweep, invocationRunsNotFailedAtTheirFault } from "@tscni/steps/testing/invocationFaultSweep"
import { bandwidthPipeline, bandwidthPlugin, ifbAlias, ifbName } from "../src/index.ts"
import type { BandwidthInput } from "../src/pipeline.ts"

type Json = Record<string, any>

const HOST_VETH = "veth-pod1"
const MBIT = 1_000_000

const env = attachmentEnv
const invoke = invokePlugin(bandwidthPlugin)

const run = <A, E>(body: Effect.Effect<A, E, Backend | MockBackend.MockControlService>) =>
  Effect.runPromise(body.pipe(Effect.provide(MockBackend.layer)))

/**
 * What the bridge plugin leaves for a pod: a bridge, the host veth on it, the pod end in
 * the pod's namespace; and the prevResult describing them.
 */
const plugPod = (name: string, hostVeth = HOST_VETH, mtu = 1500) =>
  Effect.gen(function*() {
    const backend = yield* Backend
    const ns = yield* backend.createNetns(name)
    const bridge = yield* backend.getLink(HOST_NETNS, "br0").pipe(
      Effect.catch(() => backend.createLink({ netns: HOST_NETNS, name: "br0", kind: "bridge" }))
    )
    const { link, peer } = yield* backend.createVeth({ netns: HOST_NETNS, name: hostVeth, peerNetns: ns, peerName: "eth0", mtu })
    yield* backend.setLink(HOST_NETNS, hostVeth, { master: "br0", up: true })
    const prevResult = {
      cniVersion: "1.0.0",
      interfaces: [
        { name: "br0", mac: bridge.mac },
        { name: hostVeth, mac: link.mac },
        { name: "eth0", mac: peer.mac, sandbox: ns }
      ],
      ips: [{ address: "10.88.0.2/24", gateway: "10.88.0.1", interface: 2 }]
    }
    return { ns, prevResult }
  })

const conf = (prevResult: Json | undefined, extra: Json = {}): Json => ({
  cniVersion: "1.0.0",
  name: "podnet",
  type: "bandwidth",
  ...(prevResult === undefined ? {} : { prevResult }),
  ...extra
})

const BOTH = { ingressRate: MBIT, ingressBurst: 100_000, egressRate: 2 * MBIT, egressBurst: 200_000 }

describe("bandwidth ADD on the mock kernel", () => {
  test("ingress only: a tbf at the host veth's root; prevResult returned unchanged", async () => {
    await run(Effect.gen(function*() {
      const backend = yield* Backend
      const { ns, prevResult } = yield* plugPod("p1")
      const add = yield* invoke(env("ADD", "c1", ns), conf(prevResult, { ingressRate: MBIT, ingressBurst: 100_000 }))
      expect([add.exitCode, add.json!.code]).toEqual([0, undefined])
      expect(add.json).toEqual(prevResult)
      // 125000 B/s; 25 ms of it (3125 B) plus the 12500-byte bucket
      expect(yield* backend.listQdiscs(HOST_NETNS, HOST_VETH)).toEqual([
        { link: HOST_VETH, kind: "tbf", parent: "root", handle: "1:", tbf: { rate: MBIT, burst: 100_000, limit: 15_625 } }
      ])
      expect(yield* backend.listRedirects(HOST_NETNS)).toEqual([])
      expect((yield* backend.listLinks(HOST_NETNS)).filter((l) => l.kind === "ifb")).toEqual([])
    }))
  })

  test("egress only: ingress qdisc and redirect on the host veth, an ifb with the veth's MTU and a tbf", async () => {
    await run(Effect.gen(function*() {
      const backend = yield* Backend
      const { ns, prevResult } = yield* plugPod("p1", HOST_VETH, 1400)
      const add = yield* invoke(env("ADD", "c1", ns), conf(prevResult, { egressRate: MBIT, egressBurst: 100_000 }))
      expect([add.exitCode, add.json!.code]).toEqual([0, undefined])
      const ifb = ifbName("c1", "eth0")
      expect(ifb).toMatch(/^bwp[0-9a-f]{12}$/)
      const link = yield* backend.getLink(HOST_NETNS, ifb)
      expect(link).toMatchObject({ kind: "ifb", up: true, mtu: 1400, alias: ifbAlias("podnet", "c1", "eth0") })
      expect(add.json!.interfaces).toEqual([...prevResult.interfaces, { name: ifb, mac: link.mac }])
      expect(add.json!.ips).toEqual(prevResult.ips)
      expect(yield* backend.listQdiscs(HOST_NETNS, HOST_VETH)).toEqual([
        { link: HOST_VETH, kind: "ingress", parent: "ingress", handle: "ffff:" }
      ])
      expect(yield* backend.listQdiscs(HOST_NETNS, ifb)).toEqual([
        { link: ifb, kind: "tbf", parent: "root", handle: "1:", tbf: { rate: MBIT, burst: 100_000, limit: 15_625 } }
      ])
      expect(yield* backend.listRedirects(HOST_NETNS)).toEqual([{ link: HOST_VETH, toLink: ifb }])
    }))
  })

  test("both directions; rates and bursts truncated to whole bytes as the kernel stores them", async () => {
    await run(Effect.gen(function*() {
      const backend = yield* Backend
      const { ns, prevResult } = yield* plugPod("p1")
      const add = yield* invoke(env("ADD", "c1", ns), conf(prevResult, { ...BOTH, ingressRate: MBIT + 7, ingressBurst: 100_005 }))
      expect(add.exitCode).toBe(0)
      const ifb = ifbName("c1", "eth0")
      const root = (yield* backend.listQdiscs(HOST_NETNS, HOST_VETH)).map((q) => [q.kind, q.tbf])
      expect(root).toEqual([["tbf", { rate: MBIT, burst: 100_000, limit: 15_625 }], ["ingress", undefined]])
      expect((yield* backend.listQdiscs(HOST_NETNS, ifb))[0]!.tbf).toEqual({ rate: 2 * MBIT, burst: 200_000, limit: 31_250 })
      expect(yield* backend.listRedirects(HOST_NETNS)).toEqual([{ link: HOST_VETH, toLink: ifb }])
      expect((add.json!.interfaces as Array<Json>).map((i) => i.name)).toEqual(["br0", HOST_VETH, "eth0", ifb])
    }))
  })

  test("the config's own keys win over runtimeConfig.bandwidth, as a whole entry (as the reference)", async () => {
    await run(Effect.gen(function*() {
      const backend = yield* Backend
      const { ns, prevResult } = yield* plugPod("p1")
      const add = yield* invoke(
        env("ADD", "c1", ns),
        conf(prevResult, { ingressRate: 5 * MBIT, ingressBurst: 100_000, runtimeConfig: { bandwidth: { egressRate: 3 * MBIT, egressBurst: 300_000 } } })
      )
      expect(add.exitCode).toBe(0)
      expect((yield* backend.listQdiscs(HOST_NETNS, HOST_VETH)).map((q) => q.kind)).toEqual(["tbf"])
      expect((yield* backend.listQdiscs(HOST_NETNS, HOST_VETH))[0]!.tbf?.rate).toBe(5 * MBIT)
      expect((yield* backend.listLinks(HOST_NETNS)).map((l) => l.name)).not.toContain(ifbName("c1", "eth0"))
    }))
  })

  test("runtimeConfig.bandwidth applies when the config has no limits of its own", async () => {
    await run(Effect.gen(function*() {
      const backend = yield* Backend
      const { ns, prevResult } = yield* plugPod("p1")
      const add = yield* invoke(
        env("ADD", "c1", ns),
        conf(prevResult, { runtimeConfig: { bandwidth: { egressRate: 3 * MBIT, egressBurst: 300_000 } } })
      )
      expect(add.exitCode).toBe(0)
      const ifb = ifbName("c1", "eth0")
      expect((yield* backend.listQdiscs(HOST_NETNS, HOST_VETH)).map((q) => q.kind)).toEqual(["ingress"])
      expect((yield* backend.listQdiscs(HOST_NETNS, ifb))[0]!.tbf?.rate).toBe(3 * MBIT)
    }))
  })

  test("containerd's bandwidth capability (Go field names: IngressRate, …) shapes exactly as the conventions' spelling", async () => {
    await run(Effect.gen(function*() {
      const backend = yield* Backend
      const { ns, prevResult } = yield* plugPod("p1")
      const goNamed = { runtimeConfig: { bandwidth: { IngressRate: MBIT, IngressBurst: 4294967295, EgressRate: 2 * MBIT, EgressBurst: 4294967295 } } }
      const add = yield* invoke(env("ADD", "c1", ns), conf(prevResult, goNamed))
      expect(add.exitCode).toBe(0)
      const ifb = ifbName("c1", "eth0")
      expect((yield* backend.listQdiscs(HOST_NETNS, HOST_VETH)).map((q) => [q.kind, q.tbf?.rate])).toEqual([["tbf", MBIT], ["ingress", undefined]])
      expect((yield* backend.listQdiscs(HOST_NETNS, ifb))[0]!.tbf?.rate).toBe(2 * MBIT)
      const check = yield* invoke(env("CHECK", "c1", ns), conf(add.json, goNamed))
      expect([check.exitCode, check.stdout]).toEqual([0, ""])
    }))
  })

  test("containerd's burst of MaxUint32 bits is accepted, and CHECK passes", async () => {
    await run(Effect.gen(function*() {
      const { ns, prevResult } = yield* plugPod("p1")
      const bw = { runtimeConfig: { bandwidth: { ingressRate: MBIT, ingressBurst: 4294967295, egressRate: MBIT, egressBurst: 4294967295 } } }
      const add = yield* invoke(env("ADD", "c1", ns), conf(prevResult, bw))
      expect([add.exitCode, add.stdout.includes("code")]).toEqual([0, false])
      const check = yield* invoke(env("CHECK", "c1", ns), conf(add.json, bw))
      expect([check.exitCode, check.stdout]).toEqual([0, ""])
    }))
  })

  test("nothing to shape: prevResult back at once, no kernel call at all", async () => {
    await run(Effect.gen(function*() {
      const mock = yield* MockBackend.MockControlService
      const { ns, prevResult } = yield* plugPod("p1")
      const calls = mock.calls().length
      for (const extra of [{}, { ingressRate: 0, ingressBurst: 0 }, { runtimeConfig: { bandwidth: {} } }]) {
        const add = yield* invoke(env("ADD", "c1", ns), conf(prevResult, extra))
        expect([add.exitCode, add.json]).toEqual([0, prevResult])
      }
      const first = yield* invoke(env("ADD", "c1", ns), conf(undefined))
      expect([first.exitCode, first.json]).toEqual([0, { cniVersion: "1.0.0" }])
      expect(mock.calls().length).toBe(calls)
    }))
  })

  test("bad limits are a code 7 (or 2) error naming the field, with no change", async () => {
    await run(Effect.gen(function*() {
      const mock = yield* MockBackend.MockControlService
      const { ns, prevResult } = yield* plugPod("p1")
      const before = mock.snapshot()
      const cases: Array<[Json, number, string]> = [
        [{ ingressRate: MBIT }, 7, "ingressBurst"],
        [{ egressBurst: 100_000 }, 7, "egressRate"],
        [{ ingressRate: -1, ingressBurst: 100_000 }, 7, "ingressRate"],
        [{ egressRate: 1.5, egressBurst: 100_000 }, 7, "egressRate"],
        [{ egressRate: "1M", egressBurst: 100_000 }, 7, "egressRate"],
        [{ ingressRate: 4, ingressBurst: 100_000 }, 7, "ingressRate"],
        [{ ingressRate: MBIT, ingressBurst: 8 * 2 ** 32 }, 7, "ingressBurst"],
        [{ egressRate: 2 ** 50, egressBurst: 100_000 }, 7, "egressRate"],
        // one 1514-byte frame needs 12112 bits
        [{ egressRate: MBIT, egressBurst: 12_000 }, 7, "egressBurst"],
        [{ ingressRate: MBIT, ingressBurst: 100_000, egressRate: MBIT, egressBurst: 8_000 }, 7, "egressBurst"],
        [{ runtimeConfig: { bandwidth: { ingressRate: MBIT } } }, 7, "runtimeConfig.bandwidth.ingressBurst"],
        [{ runtimeConfig: { bandwidth: { ingressRate: -5, ingressBurst: 1 } } }, 7, "runtimeConfig.bandwidth.ingressRate"],
        [{ ...BOTH, shapedSubnets: ["10.0.0.0/8"] }, 2, "shapedSubnets"]
      ]
      for (const [extra, code, field] of cases) {
        const out = yield* invoke(env("ADD", "c1", ns), conf(prevResult, extra))
        expect({ extra, exit: out.exitCode, code: out.json!.code }).toEqual({ extra, exit: 1, code })
        expect(out.json!.msg).toContain(field)
      }
      expect(mock.diff(before, mock.snapshot())).toEqual([])
    }))
  })

  test("no host interface to shape is code 7, with no change", async () => {
    await run(Effect.gen(function*() {
      const mock = yield* MockBackend.MockControlService
      const { ns, prevResult } = yield* plugPod("p1")
      const before = mock.snapshot()
      const withoutVeth = { ...prevResult, interfaces: prevResult.interfaces.filter((i) => i.name !== HOST_VETH) }
      const cases: Array<[Json | undefined, string]> = [
        [undefined, "prevResult"],
        [withoutVeth, "prevResult.interfaces"],
        [{ ...prevResult, interfaces: [] }, "prevResult.interfaces"]
      ]
      for (const [prev, field] of cases) {
        const out = yield* invoke(env("ADD", "c1", ns), conf(prev, BOTH))
        expect([out.exitCode, out.json!.code]).toEqual([1, 7])
        expect(out.json!.msg).toContain(field)
      }
      // the pod interface is not a veth
      const other = yield* invoke(env("ADD", "c1", ns, "eth9"), conf(prevResult, BOTH))
      expect([other.exitCode, other.json!.code]).toEqual([1, 7])
      expect(mock.diff(before, mock.snapshot())).toEqual([])
    }))
  })

  /** the egress path's Backend calls: ifb created and brought up, shaped, then traffic redirected to it */
  const EGRESS_STEPS: Array<[string, string]> = [
    ["createIfb", "createLink"],
    ["createIfb", "setLink"],
    ["addTbf", "addQdisc"],
    ["addIngressQdisc", "addQdisc"],
    ["redirectToIfb", "addRedirect"]
  ]
  // each direction alone and both: egress alone is the ifb path without the root tbf
  const SHAPES: Array<{
    readonly label: string
    readonly limits: Json
    readonly input: Pick<BandwidthInput, "ingress" | "egress">
    /** the operations a fault must be able to fail ADD at */
    readonly operations: ReadonlyArray<string>
    /** [step, Backend operation] of each call the pipeline's apply makes */
    readonly steps: ReadonlyArray<[string, string]>
    readonly made: ReadonlyArray<string>
  }> = [
    {
      label: "ingress only",
      limits: { ingressRate: MBIT, ingressBurst: 100_000 },
      input: { ingress: { rate: MBIT, burst: 100_000, limit: 15_625 }, egress: undefined },
      operations: ["getLink", "addQdisc"],
      steps: [["addTbf", "addQdisc"]],
      made: [`host: + qdisc {"link":"${HOST_VETH}","kind":"tbf","parent":"root","handle":"1:","tbf":{"rate":1000000,"burst":100000,"limit":15625}}`]
    },
    {
      label: "egress only",
      limits: { egressRate: MBIT, egressBurst: 100_000 },
      input: { ingress: undefined, egress: { rate: MBIT, burst: 100_000, limit: 15_625 } },
      operations: ["getLink", "createLink", "setLink", "addQdisc", "addRedirect"],
      steps: EGRESS_STEPS,
      made: [`host: + redirect ${HOST_VETH} → ${ifbName("c1", "eth0")}`, `host: + link ${ifbName("c1", "eth0")} (ifb, index 4)`]
    },
    {
      label: "both directions",
      limits: BOTH,
      input: { ingress: { rate: MBIT, burst: 100_000, limit: 15_625 }, egress: { rate: 2 * MBIT, burst: 200_000, limit: 31_250 } },
      operations: ["getLink", "createLink", "setLink", "addQdisc", "addRedirect"],
      steps: [["addTbf", "addQdisc"], ...EGRESS_STEPS],
      made: [
        `host: + qdisc {"link":"${HOST_VETH}","kind":"tbf","parent":"root","handle":"1:","tbf":{"rate":1000000,"burst":100000,"limit":15625}}`,
        `host: + redirect ${HOST_VETH} → ${ifbName("c1", "eth0")}`
      ]
    }
  ]

  for (const shape of SHAPES) {
    test(`a fault at every backend call of ADD fails it at that fault and leaves the kernel as it was: ${shape.label}`, async () => {
      const report = await Effect.runPromise(invocationFaultSweep({
        world: () => ({ layer: MockBackend.layer }),
        setup: plugPod("p1"),
        invoke: ({ ns, prevResult }) => invoke(env("ADD", "c1", ns), conf(prevResult, shape.limits))
      }))
      // ADD reads nothing optional: every fault must fail it, with its own error, leaving nothing
      expect(invocationRunsNotFailedAtTheirFault(report)).toEqual([])
      expect([...new Set(report.runs.map((run) => run.operation))].sort()).toEqual([...shape.operations].sort())
      expect(report.clean.output.exitCode).toBe(0)
      for (const line of shape.made) expect(report.clean.applied).toContain(line)
    })

    test(`faultSweep of the pipeline: every failed apply and the clean run's undo leave no residue: ${shape.label}`, async () => {
      const input: BandwidthInput = {
        hostVeth: HOST_VETH,
        ifb: { name: "bwp000000000001", mtu: 1500, txqlen: 1000, alias: "tscni:podnet/c1/eth0" },
        ...shape.input
      }
      const report = await Effect.runPromise(faultSweep(bandwidthPipeline, input, { setup: plugPod("p1") }))
      // one run per Backend call of apply, each failing the step that made it
      expect(report.runs.map((r) => [r.failedStep, r.faultedOperation])).toEqual([...shape.steps])
      expect(runsNotFailedAtTheirFault(report)).toEqual([])
      expect(report.clean.applied.length).toBeGreaterThan(0)
      expect(report.clean.applied.some((line) => line.includes("bwp000000000001"))).toBe(shape.input.egress !== undefined)
      expect([report.clean.undoDiff, report.clean.undoError]).toEqual([[], undefined])
    })
  }
})

describe("bandwidth DEL", () => {
  test("removes the ifb and the host veth's qdiscs; twice is fine", async () => {
    await run(Effect.gen(function*() {
      const mock = yield* MockBackend.MockControlService
      const { ns, prevResult } = yield* plugPod("p1")
      const before = mock.snapshot()
      const add = yield* invoke(env("ADD", "c1", ns), conf(prevResult, BOTH))
      expect(add.exitCode).toBe(0)
      expect(mock.diff(before, mock.snapshot()).length).toBeGreaterThan(0)
      for (let i = 0; i < 2; i++) {
        const del = yield* invoke(env("DEL", "c1", ns), conf(add.json, BOTH))
        expect([del.exitCode, del.stdout]).toEqual([0, ""])
        expect(mock.diff(before, mock.snapshot())).toEqual([])
      }
    }))
  })

  test("without ADD, without prevResult, with the netns gone or empty", async () => {
    await run(Effect.gen(function*() {
      const backend = yield* Backend
      const mock = yield* MockBackend.MockControlService
      const { ns, prevResult } = yield* plugPod("p1")
      const start = mock.snapshot()
      // never added
      expect((yield* invoke(env("DEL", "never", ns), conf(prevResult, BOTH))).exitCode).toBe(0)
      expect((yield* invoke(env("DEL", "never", ""), conf(undefined, BOTH))).exitCode).toBe(0)
      expect(mock.diff(start, mock.snapshot())).toEqual([])

      const add = yield* invoke(env("ADD", "c1", ns), conf(prevResult, BOTH))
      expect(add.exitCode).toBe(0)
      // the runtime deleted the pod's namespace (and with it the veth) before DEL
      yield* backend.deleteNetns(ns)
      const gone = mock.snapshot()
      for (const netns of [ns, ""]) {
        const del = yield* invoke(env("DEL", "c1", netns), conf(add.json, BOTH))
        expect([netns, del.exitCode, del.stdout]).toEqual([netns, 0, ""])
      }
      // only removals: the ifb (and what hung on it)
      const removed = mock.diff(gone, mock.snapshot())
      expect(removed.length).toBeGreaterThan(0)
      const ifb = ifbName("c1", "eth0")
      expect(removed).toContain(`host: - link ${ifb} (ifb, index 4)`)
      expect(removed.filter((line) => !(line.startsWith("host: - ") && line.includes(ifb)))).toEqual([])
      expect((yield* backend.listLinks(HOST_NETNS)).map((l) => l.name)).toEqual(["lo", "br0"])
    }))
  })

  test("without prevResult, the pod's veth still leads to the host veth: everything goes", async () => {
    await run(Effect.gen(function*() {
      const mock = yield* MockBackend.MockControlService
      const { ns, prevResult } = yield* plugPod("p1")
      const before = mock.snapshot()
      expect((yield* invoke(env("ADD", "c1", ns), conf(prevResult, BOTH))).exitCode).toBe(0)
      // a killed ADD leaves the runtime without a cached result to send
      expect((yield* invoke(env("DEL", "c1", ns), conf(undefined, BOTH))).exitCode).toBe(0)
      expect(mock.diff(before, mock.snapshot())).toEqual([])
    }))
  })

  test("without prevResult and the netns empty: the ifb still goes; the veth's qdiscs are left to the veth's DEL", async () => {
    await run(Effect.gen(function*() {
      const backend = yield* Backend
      const { ns, prevResult } = yield* plugPod("p1")
      const add = yield* invoke(env("ADD", "c1", ns), conf(prevResult, BOTH))
      expect(add.exitCode).toBe(0)
      const del = yield* invoke(env("DEL", "c1", ""), conf(undefined, BOTH))
      expect(del.exitCode).toBe(0)
      expect((yield* backend.listLinks(HOST_NETNS)).some((l) => l.kind === "ifb")).toBe(false)
    }))
  })

  test("shaping that is not ours is left alone", async () => {
    await run(Effect.gen(function*() {
      const backend = yield* Backend
      const { ns, prevResult } = yield* plugPod("p1")
      // someone else shaped this veth at another rate, and hangs a clsact on it
      yield* backend.addQdisc(HOST_NETNS, { link: HOST_VETH, kind: "tbf", parent: "root", tbf: { rate: 7 * MBIT, burst: 80_000, limit: 30_000 } })
      yield* backend.addQdisc(HOST_NETNS, { link: HOST_VETH, kind: "clsact", parent: "ingress" })
      const before = yield* backend.listQdiscs(HOST_NETNS, HOST_VETH)
      const del = yield* invoke(env("DEL", "c1", ns), conf(prevResult, BOTH))
      expect(del.exitCode).toBe(0)
      expect(yield* backend.listQdiscs(HOST_NETNS, HOST_VETH)).toEqual(before)
    }))
  })
})

describe("bandwidth CHECK", () => {
  test("passes after ADD; fails once a qdisc, the redirect or the ifb is removed by hand, or the limits differ", async () => {
    await run(Effect.gen(function*() {
      const backend = yield* Backend
      const { ns, prevResult } = yield* plugPod("p1")
      const add = yield* invoke(env("ADD", "c1", ns), conf(prevResult, BOTH))
      const ifb = ifbName("c1", "eth0")
      const check = () => invoke(env("CHECK", "c1", ns), conf(add.json, BOTH))
      expect([(yield* check()).exitCode, (yield* check()).stdout]).toEqual([0, ""])

      const changed = yield* invoke(env("CHECK", "c1", ns), conf(add.json, { ...BOTH, egressRate: 3 * MBIT }))
      expect(changed.exitCode).toBe(1)
      expect(changed.json!.msg).toContain(ifb)

      yield* backend.deleteQdisc(HOST_NETNS, HOST_VETH, "root")
      const noTbf = yield* check()
      expect(noTbf.exitCode).toBe(1)
      expect(noTbf.json!.msg).toContain(`${HOST_VETH} has no tbf`)
      yield* backend.addQdisc(HOST_NETNS, { link: HOST_VETH, kind: "tbf", parent: "root", tbf: { rate: MBIT, burst: 100_000, limit: 15_625 } })
      expect((yield* check()).exitCode).toBe(0)

      yield* backend.deleteRedirect(HOST_NETNS, { link: HOST_VETH, toLink: ifb })
      expect((yield* check()).json!.msg).toContain("redirect")
      yield* backend.addRedirect(HOST_NETNS, { link: HOST_VETH, toLink: ifb })
      expect((yield* check()).exitCode).toBe(0)

      yield* backend.deleteLink(HOST_NETNS, ifb)
      const noIfb = yield* check()
      expect(noIfb.exitCode).toBe(1)
      expect(noIfb.json!.msg).toContain(ifb)
    }))
  })

  test("with nothing configured there is nothing to check", async () => {
    await run(Effect.gen(function*() {
      const { ns, prevResult } = yield* plugPod("p1")
      expect((yield* invoke(env("CHECK", "c1", ns), conf(prevResult))).exitCode).toBe(0)
    }))
  })
})

describe("bandwidth GC and STATUS", () => {
  test("GC removes this network's ifbs whose attachment is no longer valid, and nothing else", async () => {
    await run(Effect.gen(function*() {
      const backend = yield* Backend
      const p1 = yield* plugPod("p1", "veth-pod1")
      const p2 = yield* plugPod("p2", "veth-pod2")
      const p3 = yield* plugPod("p3", "veth-pod3")
      expect((yield* invoke(env("ADD", "c1", p1.ns), conf(p1.prevResult, BOTH))).exitCode).toBe(0)
      expect((yield* invoke(env("ADD", "c2", p2.ns), conf(p2.prevResult, BOTH))).exitCode).toBe(0)
      // another network's pod: its GC list does not mention c3
      expect((yield* invoke(env("ADD", "c3", p3.ns), { ...conf(p3.prevResult, BOTH), name: "othernet" })).exitCode).toBe(0)
      // an ifb someone else made with our prefix
      yield* backend.createLink({ netns: HOST_NETNS, name: "bwpforeign", kind: "ifb" })
      const gc = yield* invoke(
        { CNI_COMMAND: "GC", CNI_PATH: "/opt/cni/bin" },
        { cniVersion: "1.1.0", name: "podnet", type: "bandwidth", "cni.dev/valid-attachments": [{ containerID: "c1", ifname: "eth0" }] }
      )
      expect([gc.exitCode, gc.stdout]).toEqual([0, ""])
      const ifbs = (yield* backend.listLinks(HOST_NETNS)).filter((l) => l.kind === "ifb").map((l) => l.name).sort()
      expect(ifbs).toEqual([ifbName("c1", "eth0"), ifbName("c3", "eth0"), "bwpforeign"].sort())
    }))
  })

  test("STATUS: ready", async () => {
    await run(Effect.gen(function*() {
      const status = yield* invoke({ CNI_COMMAND: "STATUS", CNI_PATH: "/opt/cni/bin" }, { cniVersion: "1.1.0", name: "podnet", type: "bandwidth" })
      expect([status.exitCode, status.stdout]).toEqual([0, ""])
    }))
  })
})
