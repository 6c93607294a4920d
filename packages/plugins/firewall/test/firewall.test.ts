import { describe, expect, test } from "bun:test"
import { Effect } from "effect"
import { Backend, HOST_NETNS } from "@tscni/backend"
import * as MockBackend from "@tscni/backend-mock"
import { invocationFaultSweep, invocationRunsNotFailedAtTheirFault } from "@tscni/steps/testing/invocationFaultSweep"
import { attachmentEnv, invokePlugin } from "@tscni/skel/testing"
import { firewallPlugin, firewallTable, networkTag, podAddresses, ruleOwner } from "../src/index.ts"

type Json = Record<string, any>

const CONF: Json = { cniVersion: "1.0.0", name: "fwnet", type: "firewall", backend: "" }

/** What the bridge plugin returns: bridge, host veth, pod interface; IPs on the last. */
const prevResult = (ns: string, addresses: ReadonlyArray<string> = ["10.88.0.2/24"], version = "1.0.0"): Json => ({
  cniVersion: version,
  interfaces: [{ name: "cni-br0", mac: "0a:00:00:00:00:01" }, { name: "veth1234", mac: "0a:00:00:00:00:02" }, {
    name: "eth0",
    mac: "0a:00:00:00:00:03",
    sandbox: ns
  }],
  ips: addresses.map((address) => ({
    address,
    interface: 2,
    ...(version < "1.0.0" ? { version: address.includes(":") ? "6" : "4" } : {})
  }))
})

const env = (command: string, id = "c1", netns = "/var/run/netns/p1") => attachmentEnv(command, id, netns)
const invoke = invokePlugin(firewallPlugin)

const onMock = <A, E>(body: Effect.Effect<A, E, Backend | MockBackend.MockControlService>) =>
  Effect.runPromise(body.pipe(Effect.provide(MockBackend.layer)))

/** The host side of a bridge network, as the bridge plugin leaves it. */
const bridgeNetwork = Effect.gen(function*() {
  const backend = yield* Backend
  const ns = yield* backend.createNetns("p1")
  yield* backend.createLink({ netns: HOST_NETNS, name: "cni-br0", kind: "bridge" })
  yield* backend.createVeth({ netns: HOST_NETNS, name: "veth1234", peerNetns: ns, peerName: "eth0" })
  yield* backend.setLink(HOST_NETNS, "veth1234", { master: "cni-br0" })
  return ns
})

/** Every element of the firewall tables on the host (of every network), with its owner. */
const elementsOf = (owner?: string) =>
  Effect.gen(function*() {
    const backend = yield* Backend
    const elements = []
    for (const table of yield* backend.listNftTables(HOST_NETNS, "tscni-fw-")) elements.push(...(yield* backend.listNftElements(HOST_NETNS, table)))
    return elements.filter((element) => owner === undefined || element.comment === owner)
  })
const keysOf = (owner?: string) => Effect.map(elementsOf(owner), (elements) => elements.map((e) => `${e.set} { ${e.key} }`).sort())
/** The rules of the network's table under the given settings. */
const rulesOf = (policy: "open" | "same-bridge" | "isolated", bridge?: string) =>
  Effect.gen(function*() {
    const table = firewallTable("fwnet", policy, bridge)
    const backend = yield* Backend
    const rules: Array<string> = []
    for (const chain of table.chains) rules.push(...(yield* backend.listNftChainRules(HOST_NETNS, table, chain.name)).map((rule) => `${chain.name}: ${rule}`))
    return rules
  })
/** Diff lines of what stays on the host after its last pod: the network's (empty) tables. */
const isShared = (line: string) => line.includes("+ nft table")

describe("firewall ADD and DEL on the mock kernel", () => {
  test("open (default): the pod's traffic and all ingress to it are accepted in tscni's forward chain; DEL restores", async () => {
    await onMock(Effect.gen(function*() {
      const mock = yield* MockBackend.MockControlService
      const ns = yield* bridgeNetwork
      const before = mock.snapshot()
      const prev = prevResult(ns, ["10.88.0.2/24", "fd00:0:0::2/64"])
      const add = yield* invoke(env("ADD"), { ...CONF, prevResult: prev })
      expect(add.exitCode).toBe(0)
      expect(add.json).toEqual(prev)
      const owner = ruleOwner("fwnet", "c1", "eth0")
      expect(owner).toMatch(/^fw:[0-9a-f]{8}:[0-9a-f]{12}$/)
      expect(yield* keysOf(owner)).toEqual(["pods4 { 10.88.0.2 }", "pods6 { fd00::2 }"])
      expect(yield* rulesOf("open")).toEqual([
        "forward: ip daddr @pods4 ct state established,related accept",
        "forward: ip saddr @pods4 accept",
        "forward: ip daddr @pods4 accept",
        "forward: ip6 daddr @pods6 ct state established,related accept",
        "forward: ip6 saddr @pods6 accept",
        "forward: ip6 daddr @pods6 accept"
      ])
      expect(firewallTable("fwnet", "open", undefined).chains[0]!.base).toEqual({ type: "filter", hook: "forward", priority: 0 })

      const del = yield* invoke(env("DEL"), { ...CONF, prevResult: add.json })
      expect([del.exitCode, del.stdout]).toEqual([0, ""])
      // the network's table stays, empty, until GC
      expect(mock.diff(before, mock.snapshot()).filter((line) => !isShared(line))).toEqual([])
      expect(yield* elementsOf()).toEqual([])
    }))
  })

  test("same-bridge: ingress through the pod's bridge is accepted, other new connections that were not DNAT-ed are dropped first", async () => {
    await onMock(Effect.gen(function*() {
      const ns = yield* bridgeNetwork
      // the host veth comes first here: the bridge is found by asking the kernel, not by position
      const prev = prevResult(ns)
      prev.interfaces = [prev.interfaces[1], prev.interfaces[0], prev.interfaces[2]]
      prev.ips[0].interface = 2
      const add = yield* invoke(env("ADD"), { ...CONF, ingressPolicy: "same-bridge", prevResult: prev })
      expect(add.exitCode).toBe(0)
      expect(yield* keysOf()).toEqual(["pods4 { 10.88.0.2 }"])
      expect((yield* rulesOf("same-bridge", "cni-br0")).filter((rule) => rule.includes(" ip "))).toEqual([
        "forward: ip daddr @pods4 ct state established,related accept",
        "forward: ip saddr @pods4 accept",
        "forward: iifname \"cni-br0\" ip daddr @pods4 accept",
        "isolation: iifname != \"cni-br0\" ip daddr @pods4 ct state != { established, related } ct status & dnat == 0 drop"
      ])
      expect(firewallTable("fwnet", "same-bridge", "cni-br0").chains[1]!.base).toEqual({ type: "filter", hook: "forward", priority: -1 })
      expect((yield* invoke(env("CHECK"), { ...CONF, ingressPolicy: "same-bridge", prevResult: add.json })).exitCode).toBe(0)
    }))
  })

  test("isolated: only replies and published ports reach the pod", async () => {
    await onMock(Effect.gen(function*() {
      const ns = yield* bridgeNetwork
      const add = yield* invoke(env("ADD"), { ...CONF, ingressPolicy: "isolated", prevResult: prevResult(ns) })
      expect(add.exitCode).toBe(0)
      expect(yield* keysOf()).toEqual(["pods4 { 10.88.0.2 }"])
      expect((yield* rulesOf("isolated")).filter((rule) => rule.includes(" ip "))).toEqual([
        "forward: ip daddr @pods4 ct state established,related accept",
        "forward: ip saddr @pods4 accept",
        "isolation: ip daddr @pods4 ct state != { established, related } ct status & dnat == 0 drop"
      ])
    }))
  })

  test("a fault at every backend call of ADD fails it at that fault and leaves the host unchanged", async () => {
    for (const ingressPolicy of ["open", "same-bridge", "isolated"]) {
      const report = await Effect.runPromise(invocationFaultSweep({
        world: () => ({ layer: MockBackend.layer }),
        setup: bridgeNetwork,
        invoke: (ns) => invoke(env("ADD"), { ...CONF, ingressPolicy, prevResult: prevResult(ns, ["10.88.0.2/24", "fd00::2/64"]) })
      }))
      expect({ ingressPolicy, wrong: invocationRunsNotFailedAtTheirFault(report) }).toEqual({ ingressPolicy, wrong: [] })
      // the element transaction, the table with them (the network's first pod), plus the bridge lookup (getLink) for same-bridge
      expect({ ingressPolicy, runs: report.runs.map((run) => run.operation) }).toEqual({
        ingressPolicy,
        runs: [...(ingressPolicy === "same-bridge" ? ["getLink"] : []), "addNftElements", "createNftTable"]
      })
      expect(report.clean.output.exitCode).toBe(0)
    }
  })

  test("bad configuration: code 2 for other backends, code 7 naming the field, with no change", async () => {
    await onMock(Effect.gen(function*() {
      const mock = yield* MockBackend.MockControlService
      const ns = yield* bridgeNetwork
      const before = mock.snapshot()
      const prev = prevResult(ns)
      const cases: Array<[Json, number, string]> = [
        [{ ...CONF, backend: "iptables", prevResult: prev }, 2, "backend"],
        [{ ...CONF, backend: "firewalld", prevResult: prev }, 2, "firewalld"],
        [{ ...CONF, backend: "pf", prevResult: prev }, 7, "backend"],
        [{ ...CONF, ingressPolicy: "closed", prevResult: prev }, 7, "ingressPolicy"],
        [{ ...CONF, ingressPolicy: "same-bridge", prevResult: { ...prev, interfaces: [prev.interfaces[2]] } }, 7, "ingressPolicy"],
        [CONF, 7, "prevResult"]
      ]
      for (const [conf, code, field] of cases) {
        const out = yield* invoke(env("ADD"), conf)
        expect({ field, exit: out.exitCode, code: out.json!.code }).toEqual({ field, exit: 1, code })
        expect(out.json!.msg).toContain(field)
      }
      expect(mock.diff(before, mock.snapshot())).toEqual([])
    }))
  })

  test("DEL removes exactly the pod's elements: without prevResult, twice, and without ADD", async () => {
    await onMock(Effect.gen(function*() {
      const mock = yield* MockBackend.MockControlService
      const ns = yield* bridgeNetwork
      const before = mock.snapshot()
      const a1 = yield* invoke(env("ADD", "c1"), { ...CONF, prevResult: prevResult(ns, ["10.88.0.2/24"]) })
      const a2 = yield* invoke(env("ADD", "c2"), { ...CONF, prevResult: prevResult(ns, ["10.88.0.3/24"]) })
      const other = yield* invoke(env("ADD", "c1"), { ...CONF, name: "othernet", prevResult: prevResult(ns, ["10.99.0.2/24"]) })
      expect([a1.exitCode, a2.exitCode, other.exitCode]).toEqual([0, 0, 0])
      for (let i = 0; i < 2; i++) {
        const del = yield* invoke(env("DEL", "c1", ""), CONF)
        expect([del.exitCode, del.stdout]).toEqual([0, ""])
      }
      expect(yield* keysOf()).toEqual(["pods4 { 10.88.0.3 }", "pods4 { 10.99.0.2 }"])
      expect((yield* invoke(env("DEL", "never"), CONF)).exitCode).toBe(0)
      expect((yield* invoke(env("DEL", "c2"), { ...CONF, prevResult: a2.json })).exitCode).toBe(0)
      expect((yield* invoke(env("DEL", "c1"), { ...CONF, name: "othernet" })).exitCode).toBe(0)
      expect(mock.diff(before, mock.snapshot()).filter((line) => !isShared(line))).toEqual([])
      expect(yield* elementsOf()).toEqual([])
    }))
  })

  test("a repeated ADD adopts the elements already there; with another address it adds it, and DEL removes both", async () => {
    await onMock(Effect.gen(function*() {
      const mock = yield* MockBackend.MockControlService
      const ns = yield* bridgeNetwork
      const before = mock.snapshot()
      const conf = { ...CONF, prevResult: prevResult(ns) }
      expect((yield* invoke(env("ADD"), conf)).exitCode).toBe(0)
      const first = yield* elementsOf()
      const again = yield* invoke(env("ADD"), conf)
      expect(again.exitCode).toBe(0)
      expect(yield* elementsOf()).toEqual(first)
      // the pod got another address since (an ADD that was never deleted)
      const moved = yield* invoke(env("ADD"), { ...CONF, prevResult: prevResult(ns, ["10.88.0.7/24"]) })
      expect(moved.exitCode).toBe(0)
      expect(yield* keysOf()).toEqual(["pods4 { 10.88.0.2 }", "pods4 { 10.88.0.7 }"])
      expect((yield* invoke(env("CHECK"), { ...CONF, prevResult: moved.json })).exitCode).toBe(0)
      expect((yield* invoke(env("DEL"), CONF)).exitCode).toBe(0)
      expect(mock.diff(before, mock.snapshot()).filter((line) => !isShared(line))).toEqual([])
    }))
  })

  test("an address another pod of the network holds is refused, naming it, and nothing changes", async () => {
    await onMock(Effect.gen(function*() {
      const mock = yield* MockBackend.MockControlService
      const ns = yield* bridgeNetwork
      expect((yield* invoke(env("ADD", "c1"), { ...CONF, prevResult: prevResult(ns) })).exitCode).toBe(0)
      const before = mock.snapshot()
      const taken = yield* invoke(env("ADD", "c2"), { ...CONF, prevResult: prevResult(ns) })
      expect([taken.exitCode, taken.json!.msg]).toEqual([1, expect.stringContaining(ruleOwner("fwnet", "c1", "eth0"))])
      expect(mock.diff(before, mock.snapshot())).toEqual([])
    }))
  })

  test("a prevResult without pod addresses installs nothing and returns prevResult", async () => {
    await onMock(Effect.gen(function*() {
      const mock = yield* MockBackend.MockControlService
      const ns = yield* bridgeNetwork
      const before = mock.snapshot()
      const add = yield* invoke(env("ADD"), { ...CONF, prevResult: prevResult(ns, []) })
      expect(add.exitCode).toBe(0)
      expect(mock.diff(before, mock.snapshot())).toEqual([])
    }))
  })
})

describe("firewall CHECK, GC, STATUS and versions on the mock kernel", () => {
  test("CHECK passes after ADD and fails when the pod's element or a rule of the table was removed by hand", async () => {
    await onMock(Effect.gen(function*() {
      const backend = yield* Backend
      const ns = yield* bridgeNetwork
      const add = yield* invoke(env("ADD"), { ...CONF, prevResult: prevResult(ns) })
      const check = () => invoke(env("CHECK"), { ...CONF, prevResult: add.json })
      expect((yield* check()).exitCode).toBe(0)
      const owner = ruleOwner("fwnet", "c1", "eth0")
      const table = firewallTable("fwnet", "open", undefined)
      yield* backend.deleteNftElements(HOST_NETNS, table, [{ set: "pods4", key: "10.88.0.2" }])
      const gone = yield* check()
      expect([gone.exitCode, gone.json!.msg]).toEqual([1, expect.stringContaining("pods4 { 10.88.0.2 }")])
      // back, but someone else's
      yield* backend.addNftElements(HOST_NETNS, table, [{ set: "pods4", key: "10.88.0.2", comment: "fw:other:000000000000" }])
      const foreign = yield* check()
      expect([foreign.exitCode, foreign.json!.msg]).toEqual([1, expect.stringContaining(`not ${owner}`)])
      yield* backend.deleteNftElements(HOST_NETNS, table, [{ set: "pods4", key: "10.88.0.2" }])
      yield* backend.addNftElements(HOST_NETNS, table, [{ set: "pods4", key: "10.88.0.2", comment: owner }])
      expect((yield* check()).exitCode).toBe(0)
      // the table lost a rule (someone deleted and re-created it by hand)
      yield* backend.deleteNftTable(HOST_NETNS, table)
      yield* backend.createNftTable(HOST_NETNS, { ...table, chains: table.chains.map((chain) => ({ ...chain, rules: chain.rules.slice(1) })) }, [
        { set: "pods4", key: "10.88.0.2", comment: owner }
      ])
      const rules = yield* check()
      expect([rules.exitCode, rules.json!.msg]).toEqual([1, expect.stringContaining("expected 6")])
    }))
  })

  test("GC removes the rules of this network's attachments that are no longer valid, only those", async () => {
    await onMock(Effect.gen(function*() {
      const ns = yield* bridgeNetwork
      for (const [id, ip] of [["c1", "10.88.0.2/24"], ["c2", "10.88.0.3/24"], ["c3", "10.88.0.4/24"]] as const) {
        expect((yield* invoke(env("ADD", id), { ...CONF, prevResult: prevResult(ns, [ip]) })).exitCode).toBe(0)
      }
      expect((yield* invoke(env("ADD", "c1"), { ...CONF, name: "othernet", prevResult: prevResult(ns, ["10.99.0.2/24"]) })).exitCode).toBe(0)
      const gc = yield* invoke({ CNI_COMMAND: "GC", CNI_PATH: "/opt/cni/bin" }, {
        ...CONF,
        cniVersion: "1.1.0",
        "cni.dev/valid-attachments": [{ containerID: "c2", ifname: "eth0" }]
      })
      expect([gc.exitCode, gc.stdout]).toEqual([0, ""])
      const owners = new Set((yield* elementsOf()).map((element) => element.comment))
      expect(owners).toEqual(new Set([ruleOwner("fwnet", "c2", "eth0"), ruleOwner("othernet", "c1", "eth0")]))
      expect(networkTag("fwnet")).not.toBe(networkTag("othernet"))
    }))
  })

  test("STATUS: ready when nftables answers, code 50 when it is unsupported", async () => {
    await onMock(Effect.gen(function*() {
      const mock = yield* MockBackend.MockControlService
      const conf = { ...CONF, cniVersion: "1.1.0" }
      expect((yield* invoke({ CNI_COMMAND: "STATUS" }, conf)).exitCode).toBe(0)
      mock.failWhen((call) => call.operation === "listFilterRules", "Unsupported")
      const down = yield* invoke({ CNI_COMMAND: "STATUS" }, conf)
      expect([down.exitCode, down.json!.code]).toEqual([1, 50])
      const bad = yield* invoke({ CNI_COMMAND: "STATUS" }, { ...conf, backend: "iptables" })
      expect([bad.exitCode, bad.json!.code]).toEqual([1, 2])
    }))
  })

  for (const version of ["0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0"]) {
    test(`cniVersion ${version}: prevResult comes back unchanged in that version`, async () => {
      await onMock(Effect.gen(function*() {
        const ns = yield* bridgeNetwork
        const conf = { ...CONF, cniVersion: version }
        const prev = prevResult(ns, ["10.88.0.2/24", "fd00::2/64"], version)
        const add = yield* invoke(env("ADD"), { ...conf, prevResult: prev })
        expect(add.exitCode).toBe(0)
        expect(add.json).toEqual(prev)
        expect(yield* elementsOf()).toHaveLength(2)
        if (version >= "0.4.0") expect((yield* invoke(env("CHECK"), { ...conf, prevResult: add.json })).exitCode).toBe(0)
        expect((yield* invoke(env("DEL"), { ...conf, prevResult: add.json })).exitCode).toBe(0)
        expect(yield* elementsOf()).toEqual([])
      }))
    })
  }
})

describe("pod addresses", () => {
  test("the IPs of sandboxed interfaces and of no interface; host-side ones are not the pod's", () => {
    expect(podAddresses({
      cniVersion: "1.0.0",
      interfaces: [{ name: "br0" }, { name: "eth0", sandbox: "/ns" }],
      ips: [
        { address: "10.0.0.1/24", interface: 0 },
        { address: "10.0.0.2/24", interface: 1 },
        { address: "fd00:0::0:3/64" },
        { address: "10.0.0.2/24", interface: 1 }
      ]
    })).toEqual(["10.0.0.2", "fd00::3"])
  })
})
