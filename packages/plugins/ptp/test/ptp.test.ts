import { describe, expect, test } from "bun:test"
import { Effect, Layer } from "effect"
import { Backend, HOST_NETNS } from "@tscni/backend"
import * as MockBackend from "@tscni/backend-mock"
import { attachmentEnv, invokePlugin } from "@tscni/skel/testing"
import { attachmentKey, masqueradeChain, masqueradeTable, type PluginExec } from "@tscni/steps"
import { type FakeIpamRanges, makeFakeIpam } from "@tscni/steps/testing/fakeIpam"
import { type FakePlugin, makeFakePluginExec } from "@tscni/steps/testing/fakePluginExec"
import { CONF } from "./fixtures.ts"
import { hostVethName, ptpPlugin, ruleOwner } from "../src/index.ts"

type Json = Record<string, any>

/** A mock kernel plus a fake host-local (or any IPAM given as a function), kept for the whole test. */
const world = (ranges: FakeIpamRanges = { v4: "10.88.0" }, others: Record<string, FakePlugin> = {}) => {
  const ipam = makeFakeIpam(ranges)
  const exec = makeFakePluginExec({ "fake-ipam": ipam.plugin, ...others })
  return { ipam, exec, layer: Layer.mergeAll(MockBackend.layer, exec.layer) }
}

const env = attachmentEnv
const invoke = invokePlugin(ptpPlugin)

const run = <A, E>(w: ReturnType<typeof world>, body: Effect.Effect<A, E, Backend | MockBackend.MockControlService | PluginExec>) =>
  Effect.runPromise(body.pipe(Effect.provide(w.layer)))

const pod = (name: string) => Backend.use((backend) => backend.createNetns(name))

const VETH = hostVethName("c1", "eth0")
const OWNER = ruleOwner("podnet", "c1", "eth0")
const MASQ = masqueradeTable("podnet")
/** The network's masquerade elements, as `set { key } owner` lines. */
const masqElements = Effect.map(
  Backend.use((backend) => backend.listNftElements(HOST_NETNS, MASQ)),
  (elements) => elements.map((e) => `${e.set} { ${e.key} } ${e.comment}`).sort()
)
/** Diff lines of what stays on the host after its last pod: the forwarding switches, the network's (empty) table. */
const isShared = (line: string) => line.includes("sysctl net.ipv4.ip_forward") || line.includes("sysctl net.ipv6.conf.all.forwarding") || line.includes("+ nft table")

const gc = (conf: Json, valid: Array<[string, string]>) =>
  invoke({ CNI_COMMAND: "GC", CNI_PATH: "/opt/cni/bin" }, {
    ...conf,
    cniVersion: "1.1.0",
    "cni.dev/valid-attachments": valid.map(([containerID, ifname]) => ({ containerID, ifname }))
  })

describe("ptp ADD on the mock kernel", () => {
  test("IPv4: the pod routed through its gateway on a veth of its own; the host end carries the gateway and a host route to the pod", async () => {
    const w = world()
    await run(w, Effect.gen(function*() {
      const mock = yield* MockBackend.MockControlService
      const backend = yield* Backend
      const ns = yield* pod("p1")
      const before = mock.snapshot()
      const add = yield* invoke(env("ADD", "c1", ns), CONF)
      expect([add.exitCode, add.json]).toEqual([0, {
        cniVersion: "1.0.0",
        interfaces: [{ name: VETH, mac: expect.any(String) }, { name: "eth0", mac: expect.any(String), sandbox: ns }],
        ips: [{ interface: 1, address: "10.88.0.2/24", gateway: "10.88.0.1" }],
        // IPAM's routes as IPAM gave them (the reference completes nothing)
        routes: [{ dst: "0.0.0.0/0" }]
      }])
      // exactly this, and nothing else: no connected route to 10.88.0.0/24 on eth0
      const table = MASQ.name
      expect(mock.diff(before, mock.snapshot()).filter((line) => !line.includes(" sysctl net.ipv4.conf.") && !line.includes("sysctl net.ipv6.conf.eth0.") && !line.includes(`sysctl net.ipv6.conf.${VETH}.`) && !line.includes("+ nft table"))).toEqual([
        `${ns}: + link eth0 (veth, index 2)`,
        `${ns}: + address eth0 10.88.0.2/24`,
        `${ns}: + route 0.0.0.0/0 via 10.88.0.1 dev eth0 scope universe`,
        `${ns}: + route 10.88.0.0/24 via 10.88.0.1 dev eth0 scope universe src 10.88.0.2`,
        `${ns}: + route 10.88.0.1/32 dev eth0 scope link src 10.88.0.2`,
        `host: + link ${VETH} (veth, index 2)`,
        `host: + address ${VETH} 10.88.0.1/32`,
        `host: + route 10.88.0.2/32 dev ${VETH} scope host`,
        "host: ~ sysctl net.ipv4.ip_forward: 0 → 1",
        `host: + nft element inet ${table} own4 { 10.88.0.2 . 10.88.0.0/24 } comment "${OWNER}"`,
        `host: + nft element inet ${table} pods4 { 10.88.0.2 } comment "${OWNER}"`
      ])
      const hostEnd = yield* backend.getLink(HOST_NETNS, VETH)
      const podEnd = yield* backend.getLink(ns, "eth0")
      expect(hostEnd).toMatchObject({ kind: "veth", up: true, mtu: 1400, alias: "tscni:podnet/c1/eth0", mac: add.json!.interfaces[0].mac, peerIndex: podEnd.index })
      expect(podEnd).toMatchObject({ kind: "veth", up: true, mtu: 1400, mac: add.json!.interfaces[1].mac, peerIndex: hostEnd.index })
      // IPv4 only: no IPv6 forwarding
      expect(yield* backend.readSysctl(HOST_NETNS, "net.ipv6.conf.all.forwarding")).toBe("0")
      expect(w.ipam.allocations().get("c1/eth0")).toBe("10.88.0.2/24")
    }))
  })

  test("dual stack: IPv6 too, /128 on the host end, IPv6 forwarding; DAD off on the host end (the addresses skip it anyway: nodad)", async () => {
    const w = world({ v4: "10.88.0", v6: "fd00:88::" })
    await run(w, Effect.gen(function*() {
      const mock = yield* MockBackend.MockControlService
      const backend = yield* Backend
      const ns = yield* pod("p1")
      const before = mock.snapshot()
      const add = yield* invoke(env("ADD", "c1", ns), CONF)
      expect(add.exitCode).toBe(0)
      expect(add.json!.ips).toEqual([
        { interface: 1, address: "10.88.0.2/24", gateway: "10.88.0.1" },
        { interface: 1, address: "fd00:88::2/64", gateway: "fd00:88::1" }
      ])
      const diff = mock.diff(before, mock.snapshot())
      expect(diff.filter((line) => line.includes("fd00:88::") && !line.includes("nft element"))).toEqual([
        `${ns}: + address eth0 fd00:88::2/64`,
        `${ns}: + route ::/0 via fd00:88::1 dev eth0 scope universe metric 1024`,
        `${ns}: + route fd00:88::/64 via fd00:88::1 dev eth0 scope universe metric 1024 src fd00:88::2`,
        `${ns}: + route fd00:88::1/128 dev eth0 scope universe metric 1024 src fd00:88::2`,
        `host: + address ${VETH} fd00:88::1/128`,
        // the kernel's own route to the host end's /128, and ours to the pod
        `host: + route fd00:88::1/128 dev ${VETH} scope universe metric 256`,
        `host: + route fd00:88::2/128 dev ${VETH} scope universe metric 1024`
      ])
      expect(yield* backend.readSysctl(ns, "net.ipv6.conf.eth0.accept_dad")).toBe("1")
      expect(yield* backend.readSysctl(HOST_NETNS, `net.ipv6.conf.${VETH}.accept_dad`)).toBe("0")
      expect(diff).toContain("host: ~ sysctl net.ipv6.conf.all.forwarding: 0 → 1")
      expect(yield* masqElements).toEqual([
        `own4 { 10.88.0.2 . 10.88.0.0/24 } ${OWNER}`,
        `own6 { fd00:88::2 . fd00:88::/64 } ${OWNER}`,
        `pods4 { 10.88.0.2 } ${OWNER}`,
        `pods6 { fd00:88::2 } ${OWNER}`
      ])
    }))
  })

  test("two pods of one network: each host end carries the same gateway; the pods' routes name only their own veth", async () => {
    const w = world()
    await run(w, Effect.gen(function*() {
      const backend = yield* Backend
      const ns1 = yield* pod("p1")
      const ns2 = yield* pod("p2")
      expect((yield* invoke(env("ADD", "c1", ns1), CONF)).exitCode).toBe(0)
      expect((yield* invoke(env("ADD", "c2", ns2), CONF)).exitCode).toBe(0)
      const veth2 = hostVethName("c2", "eth0")
      expect((yield* backend.listAddresses(HOST_NETNS)).filter((a) => a.link !== "lo").map((a) => `${a.link} ${a.cidr}`).sort()).toEqual([`${VETH} 10.88.0.1/32`, `${veth2} 10.88.0.1/32`].sort())
      expect((yield* backend.listRoutes(HOST_NETNS)).filter((r) => r.link !== "lo").map((r) => `${r.dst} ${r.link}`).sort()).toEqual([`10.88.0.2/32 ${VETH}`, `10.88.0.3/32 ${veth2}`].sort())
    }))
  })

  test("IPAM's own routes: without a gateway through the family's gateway, with one through it (only the gateway is on the link: another is unreachable, a clean failure); a /32 from IPAM works (no kernel route to drop)", async () => {
    const fixed = (routes: Array<Json>): FakePlugin => () => ({
      exitCode: 0,
      stderr: "",
      stdout: JSON.stringify({ cniVersion: "1.1.0", ips: [{ address: "10.66.0.5/32", gateway: "10.66.0.1" }], routes })
    })
    const routes = [{ dst: "198.51.100.0/24" }, { dst: "203.0.113.0/24", gw: "10.66.0.1", priority: 50 }]
    const w = world({ v4: "10.88.0" }, { "fixed-ipam": fixed(routes), "far-ipam": fixed([{ dst: "192.0.2.0/24", gw: "10.66.0.254" }]) })
    await run(w, Effect.gen(function*() {
      const mock = yield* MockBackend.MockControlService
      const backend = yield* Backend
      const ns = yield* pod("p1")
      const before = mock.snapshot()
      // 1.1.0: routes may carry a priority
      const far = yield* invoke(env("ADD", "c1", ns), { ...CONF, cniVersion: "1.1.0", ipam: { type: "far-ipam" } })
      expect([far.exitCode, far.json?.msg]).toEqual([1, "gateway 10.66.0.254 is unreachable: network is unreachable"])
      expect(mock.diff(before, mock.snapshot())).toEqual([])
      expect(w.exec.calls().map((call) => call.env.CNI_COMMAND)).toEqual(["ADD", "DEL"])

      const add = yield* invoke(env("ADD", "c1", ns), { ...CONF, cniVersion: "1.1.0", ipam: { type: "fixed-ipam" } })
      expect([add.exitCode, add.json!.routes]).toEqual([0, routes])
      expect((yield* backend.listRoutes(ns)).map((r) => `${r.dst} via ${r.gateway ?? "-"} ${r.scope} ${r.priority ?? 0}`)).toEqual([
        "10.66.0.1/32 via - link 0",
        "10.66.0.5/32 via 10.66.0.1 universe 0",
        "198.51.100.0/24 via 10.66.0.1 universe 0",
        "203.0.113.0/24 via 10.66.0.1 universe 50"
      ])
      expect((yield* backend.listAddresses(HOST_NETNS, VETH)).map((a) => a.cidr)).toEqual(["10.66.0.1/32"])
    }))
  })

  test("the config's dns replaces IPAM's only when it says something", async () => {
    const withDns: FakePlugin = () => ({
      exitCode: 0,
      stderr: "",
      stdout: JSON.stringify({ cniVersion: "1.0.0", ips: [{ address: "10.66.0.5/24", gateway: "10.66.0.1" }], dns: { nameservers: ["10.66.0.53"] } })
    })
    const w = world({ v4: "10.88.0" }, { "dns-ipam": withDns })
    await run(w, Effect.gen(function*() {
      const cases: Array<[Json | undefined, Json]> = [
        [undefined, { nameservers: ["10.66.0.53"] }],
        [{}, { nameservers: ["10.66.0.53"] }],
        [{ domain: "" }, { nameservers: ["10.66.0.53"] }],
        [{ search: ["svc.local"] }, { search: ["svc.local"] }],
        [{ nameservers: ["192.0.2.53"], domain: "pods.local" }, { nameservers: ["192.0.2.53"], domain: "pods.local" }]
      ]
      for (const [index, [dns, expected]] of cases.entries()) {
        const ns = yield* pod(`d${index}`)
        const add = yield* invoke(env("ADD", `d${index}`, ns), { ...CONF, ipam: { type: "dns-ipam" }, ...(dns === undefined ? {} : { dns }) })
        expect({ index, dns: add.json?.dns }).toEqual({ index, dns: expected })
        expect((yield* invoke(env("DEL", `d${index}`, ns), { ...CONF, ipam: { type: "dns-ipam" } })).exitCode).toBe(0)
      }
    }))
  })

  test("mtu 0 is the kernel's default, as in the reference", async () => {
    const w = world()
    await run(w, Effect.gen(function*() {
      const backend = yield* Backend
      const ns = yield* pod("p1")
      expect((yield* invoke(env("ADD", "c1", ns), { ...CONF, mtu: 0 })).exitCode).toBe(0)
      expect([(yield* backend.getLink(HOST_NETNS, VETH)).mtu, (yield* backend.getLink(ns, "eth0")).mtu]).toEqual([1500, 1500])
    }))
  })

  test("bad configuration is a code 7 error naming the field, with no change and no IP taken", async () => {
    const w = world()
    await run(w, Effect.gen(function*() {
      const mock = yield* MockBackend.MockControlService
      const ns = yield* pod("p1")
      const before = mock.snapshot()
      const { ipam: _ipam, ...noIpam } = CONF
      const cases: Array<[Json, string]> = [
        [{ ...CONF, mtu: 10 }, "mtu: "],
        [{ ...CONF, mtu: 1400.5 }, "mtu: "],
        [{ ...CONF, mtu: "1400" }, "mtu: "],
        [{ ...CONF, ipMasq: "true" }, "ipMasq: "],
        [{ ...CONF, ipMasqBackend: "xtables" }, "ipMasqBackend: "],
        [noIpam, "ipam.type: "],
        [{ ...CONF, ipam: {} }, "ipam.type: "],
        [{ ...CONF, ipam: { type: "" } }, "ipam.type: "]
      ]
      for (const [conf, field] of cases) {
        for (const command of ["ADD", "DEL"]) {
          const out = yield* invoke(env(command, "c1", ns), conf)
          expect({ field, command, exit: out.exitCode, code: out.json?.code, msg: String(out.json?.msg).slice(0, field.length) }).toEqual({ field, command, exit: 1, code: 7, msg: field })
        }
      }
      expect(mock.diff(before, mock.snapshot())).toEqual([])
      expect(w.exec.calls()).toEqual([])
    }))
  })

  test("an IPAM result ptp cannot route (no gateway) is code 7 and gives the IP back, nothing left", async () => {
    const w = world({ v4: "10.88.0", gateways: false })
    await run(w, Effect.gen(function*() {
      const mock = yield* MockBackend.MockControlService
      const ns = yield* pod("p1")
      const before = mock.snapshot()
      const add = yield* invoke(env("ADD", "c1", ns), CONF)
      expect([add.exitCode, add.json?.code, add.json?.msg]).toEqual([1, 7, "ipam result: 10.88.0.2/24 has no gateway: ptp routes the pod through its gateway"])
      expect(mock.diff(before, mock.snapshot())).toEqual([])
      expect([...w.ipam.allocations()]).toEqual([])
    }))
  })

  test("an IPAM failure (range exhausted) comes back unchanged, nothing made", async () => {
    const w = world()
    await run(w, Effect.gen(function*() {
      const mock = yield* MockBackend.MockControlService
      const ns = yield* pod("p1")
      const before = mock.snapshot()
      w.ipam.failAdd({ code: 11, msg: "no IP addresses available in range set 10.88.0.0/24" })
      const add = yield* invoke(env("ADD", "c1", ns), CONF)
      expect([add.exitCode, add.json?.code, add.json?.msg]).toEqual([1, 11, "no IP addresses available in range set 10.88.0.0/24"])
      expect(mock.diff(before, mock.snapshot())).toEqual([])
    }))
  })

  test("an interface name already taken in the pod is refused; the IP is given back, nothing left", async () => {
    const w = world()
    await run(w, Effect.gen(function*() {
      const mock = yield* MockBackend.MockControlService
      const backend = yield* Backend
      const ns = yield* pod("p1")
      yield* backend.createVeth({ netns: ns, name: "eth0", peerNetns: ns, peerName: "other" })
      const before = mock.snapshot()
      const add = yield* invoke(env("ADD", "c1", ns), CONF)
      expect([add.exitCode, String(add.json?.msg)]).toEqual([1, expect.stringContaining("eth0")])
      expect(mock.diff(before, mock.snapshot())).toEqual([])
      expect([...w.ipam.allocations()]).toEqual([])
    }))
  })

  test("a cleanup inside a step that fails is not swallowed: the error's details say what was left", async () => {
    const w = world()
    await run(w, Effect.gen(function*() {
      const mock = yield* MockBackend.MockControlService
      const ns = yield* pod("p1")
      // naming the new veth fails, and so does removing it again
      mock.failWhen((call) => (call.operation === "setLink" && JSON.stringify(call.args).includes('"alias"')) || call.operation === "deleteLink")
      const add = yield* invoke(env("ADD", "c1", ns), CONF)
      mock.clearFaults()
      expect([add.exitCode, add.json?.code]).toEqual([1, 5])
      expect(String(add.json?.details)).toContain("rollback incomplete: vethPair: ")
    }))
  })

  test("ADD and DEL never list the host's links or routes (their cost does not grow with the host)", async () => {
    const w = world()
    await run(w, Effect.gen(function*() {
      const mock = yield* MockBackend.MockControlService
      const ns = yield* pod("p1")
      const before = mock.calls().length
      const add = yield* invoke(env("ADD", "c1", ns), CONF)
      expect((yield* invoke(env("DEL", "c1", ns), { ...CONF, prevResult: add.json })).exitCode).toBe(0)
      const listings = mock.calls().slice(before).filter((call) => ["listLinks", "listRoutes", "listAddresses"].includes(call.operation) && call.args[0] === HOST_NETNS && call.args[1] === undefined)
      expect(listings).toEqual([])
    }))
  })
})

describe("ptp result in every spec version", () => {
  const ipsOf = (version: string) =>
    version.startsWith("0.")
      ? [{ version: "4", interface: 1, address: "10.88.0.2/24", gateway: "10.88.0.1" }, { version: "6", interface: 1, address: "fd00:88::2/64", gateway: "fd00:88::1" }]
      : [{ interface: 1, address: "10.88.0.2/24", gateway: "10.88.0.1" }, { interface: 1, address: "fd00:88::2/64", gateway: "fd00:88::1" }]
  for (const version of ["0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0"]) {
    test(`${version}: host veth, then the pod's interface; both addresses on it; DEL (with prevResult from 0.4.0 on) leaves nothing of the pod`, async () => {
      const w = world({ v4: "10.88.0", v6: "fd00:88::" })
      await run(w, Effect.gen(function*() {
        const mock = yield* MockBackend.MockControlService
        const ns = yield* pod("p1")
        const before = mock.snapshot()
        const conf = { ...CONF, cniVersion: version }
        const add = yield* invoke(env("ADD", "c1", ns), conf)
        expect(add.json).toEqual({
          cniVersion: version,
          interfaces: [{ name: VETH, mac: expect.stringMatching(/^[0-9a-f:]{17}$/) }, { name: "eth0", mac: expect.stringMatching(/^[0-9a-f:]{17}$/), sandbox: ns }],
          ips: ipsOf(version),
          routes: [{ dst: "0.0.0.0/0" }, { dst: "::/0" }]
        })
        if (version >= "0.4.0") {
          const check = yield* invoke(env("CHECK", "c1", ns), { ...conf, prevResult: add.json })
          expect([check.exitCode, check.stdout]).toEqual([0, ""])
        }
        const del = yield* invoke(env("DEL", "c1", ns), version >= "0.4.0" ? { ...conf, prevResult: add.json } : conf)
        expect([del.exitCode, del.stdout]).toEqual([0, ""])
        expect(mock.diff(before, mock.snapshot()).filter((line) => !isShared(line))).toEqual([])
        expect(yield* masqElements).toEqual([])
        expect(w.ipam.allocations().size).toBe(0)
      }))
    })
  }
})

describe("ptp DEL, CHECK, GC and STATUS on the mock kernel", () => {
  test("arp_notify is on for the pod interface (the reference ptp leaves it off), and CHECK finds it turned off", async () => {
    const w = world()
    await run(w, Effect.gen(function*() {
      const backend = yield* Backend
      const ns = yield* pod("p1")
      const add = yield* invoke(env("ADD", "c1", ns), CONF)
      expect(add.exitCode).toBe(0)
      expect(yield* backend.readSysctl(ns, "net.ipv4.conf.eth0.arp_notify")).toBe("1")
      expect((yield* invoke(env("CHECK", "c1", ns), { ...CONF, prevResult: add.json })).exitCode).toBe(0)
      yield* backend.writeSysctl(ns, "net.ipv4.conf.eth0.arp_notify", "0")
      const broken = yield* invoke(env("CHECK", "c1", ns), { ...CONF, prevResult: add.json })
      expect([broken.exitCode, broken.stdout]).toEqual([1, expect.stringContaining("arp_notify")])
    }))
  })

  test("DEL removes everything of the pod; another pod keeps its veth, gateway, routes and masquerade", async () => {
    const w = world()
    await run(w, Effect.gen(function*() {
      const mock = yield* MockBackend.MockControlService
      const ns1 = yield* pod("p1")
      const ns2 = yield* pod("p2")
      const before = mock.snapshot()
      const add1 = yield* invoke(env("ADD", "c1", ns1), CONF)
      const afterFirst = mock.snapshot()
      const add2 = yield* invoke(env("ADD", "c2", ns2), CONF)
      expect((yield* invoke(env("DEL", "c2", ns2), { ...CONF, prevResult: add2.json })).exitCode).toBe(0)
      // as after the first pod alone (but for p2's namespace, whose veth end went)
      expect(mock.diff(afterFirst, mock.snapshot())).toEqual([])
      expect((yield* invoke(env("CHECK", "c1", ns1), { ...CONF, prevResult: add1.json })).exitCode).toBe(0)
      expect((yield* invoke(env("DEL", "c1", ns1), { ...CONF, prevResult: add1.json })).exitCode).toBe(0)
      expect(mock.diff(before, mock.snapshot()).filter((line) => !isShared(line))).toEqual([])
      expect(w.ipam.allocations().size).toBe(0)
    }))
  })

  test("DEL succeeds twice, without prevResult, without ADD, and with the namespace gone or not named", async () => {
    const w = world({ v4: "10.88.0", v6: "fd00:88::" })
    await run(w, Effect.gen(function*() {
      const mock = yield* MockBackend.MockControlService
      const backend = yield* Backend
      const before = mock.snapshot()
      const ns = yield* pod("p1")
      const add = yield* invoke(env("ADD", "c1", ns), CONF)
      yield* backend.deleteNetns(ns)
      for (const [netns, conf] of [[ns, { ...CONF, prevResult: add.json }], ["", { ...CONF, prevResult: add.json }], ["", CONF]] as const) {
        const del = yield* invoke(env("DEL", "c1", netns), conf)
        expect([del.exitCode, del.stdout]).toEqual([0, ""])
      }
      expect(mock.diff(before, mock.snapshot()).filter((line) => !isShared(line))).toEqual([])
      expect(w.ipam.allocations().size).toBe(0)
      const never = yield* invoke(env("DEL", "never-added", ""), CONF)
      expect([never.exitCode, never.stdout]).toEqual([0, ""])
    }))
  })

  test("DEL without prevResult finds the pod's masquerade by owner, and only this pod's", async () => {
    const w = world()
    await run(w, Effect.gen(function*() {
      const ns1 = yield* pod("p1")
      const ns2 = yield* pod("p2")
      yield* invoke(env("ADD", "c1", ns1), CONF)
      yield* invoke(env("ADD", "c2", ns2), CONF)
      // ipMasq turned off since ADD: DEL still looks
      expect((yield* invoke(env("DEL", "c1", ns1), { ...CONF, ipMasq: false })).exitCode).toBe(0)
      const other = ruleOwner("podnet", "c2", "eth0")
      expect(yield* masqElements).toEqual([`own4 { 10.88.0.3 . 10.88.0.0/24 } ${other}`, `pods4 { 10.88.0.3 } ${other}`])
    }))
  })

  test("CHECK passes after ADD and names what was changed by hand", async () => {
    const w = world({ v4: "10.88.0", v6: "fd00:88::" })
    await run(w, Effect.gen(function*() {
      const backend = yield* Backend
      const ns = yield* pod("p1")
      const add = yield* invoke(env("ADD", "c1", ns), CONF)
      const check = (prevResult: unknown = add.json) => invoke(env("CHECK", "c1", ns), { ...CONF, prevResult })
      expect((yield* check()).exitCode).toBe(0)
      /** The pod's routes as ADD leaves them, after a change by hand took some or gave back the kernel's. */
      const podRoutesAsAdded = Effect.gen(function*() {
        // a delete without a gateway takes any route to that network: all go, then ADD's come back
        for (const route of [{ dst: "10.88.0.0/24", link: "eth0" }, { dst: "fd00:88::/64", link: "eth0" }]) {
          for (let i = 0; i < 3; i++) yield* backend.deleteRoute(ns, route).pipe(Effect.ignore)
        }
        for (const route of [
          { dst: "10.88.0.1/32", link: "eth0", scope: "link", src: "10.88.0.2" },
          { dst: "10.88.0.0/24", gateway: "10.88.0.1", link: "eth0", src: "10.88.0.2" },
          { dst: "0.0.0.0/0", gateway: "10.88.0.1", link: "eth0" },
          { dst: "fd00:88::1/128", link: "eth0", scope: "link", src: "fd00:88::2" },
          { dst: "fd00:88::/64", gateway: "fd00:88::1", link: "eth0", src: "fd00:88::2" },
          { dst: "::/0", gateway: "fd00:88::1", link: "eth0" }
        ] as const) yield* backend.addRoute(ns, route, { append: true }).pipe(Effect.ignore)
      })
      /** Breaks one thing, CHECK must fail naming it, then puts it back, CHECK must pass. */
      const broken = (what: string, breakIt: Effect.Effect<unknown, unknown>, repair: Effect.Effect<unknown, unknown>, message: string) =>
        Effect.gen(function*() {
          yield* breakIt
          const out = yield* check()
          expect({ what, exit: out.exitCode, msg: out.json?.msg }).toEqual({ what, exit: 1, msg: expect.stringContaining(message) })
          yield* repair
          expect({ what, exit: (yield* check()).exitCode }).toEqual({ what, exit: 0 })
        })
      yield* broken("pod address", backend.deleteAddress(ns, "eth0", "fd00:88::2/64"),
        backend.addAddress(ns, "eth0", "fd00:88::2/64").pipe(Effect.andThen(podRoutesAsAdded)), "fd00:88::2/64")
      yield* broken("the network on the link", backend.addRoute(ns, { dst: "10.88.0.0/24", link: "eth0", src: "10.88.0.2" }, { append: true }),
        podRoutesAsAdded, "10.88.0.0/24 is routed straight onto eth0")
      yield* broken("route to the network via the gateway", backend.deleteRoute(ns, { dst: "10.88.0.0/24", gateway: "10.88.0.1", link: "eth0" }),
        backend.addRoute(ns, { dst: "10.88.0.0/24", gateway: "10.88.0.1", link: "eth0", src: "10.88.0.2" }), "no route to 10.88.0.0/24 via 10.88.0.1")
      yield* broken("default route", backend.deleteRoute(ns, { dst: "::/0", gateway: "fd00:88::1", link: "eth0" }),
        backend.addRoute(ns, { dst: "::/0", gateway: "fd00:88::1", link: "eth0" }), "no route to ::/0")
      yield* broken("gateway on the host end", backend.deleteAddress(HOST_NETNS, VETH, "10.88.0.1/32"),
        backend.addAddress(HOST_NETNS, VETH, "10.88.0.1/32"), "10.88.0.1/32 is not on")
      yield* broken("host route", backend.deleteRoute(HOST_NETNS, { dst: "fd00:88::2/128", link: VETH }),
        backend.addRoute(HOST_NETNS, { dst: "fd00:88::2/128", link: VETH, scope: "host" }), "no route to fd00:88::2/128")
      yield* broken("masquerade", backend.deleteNftElements(HOST_NETNS, MASQ, [{ set: "pods6", key: "fd00:88::2" }]),
        backend.addNftElements(HOST_NETNS, MASQ, [{ set: "pods6", key: "fd00:88::2", comment: OWNER }]), "fd00:88::2")
      yield* broken("forwarding", backend.writeSysctl(HOST_NETNS, "net.ipv6.conf.all.forwarding", "0"),
        backend.writeSysctl(HOST_NETNS, "net.ipv6.conf.all.forwarding", "1"), "net.ipv6.conf.all.forwarding")
      // down takes eth0's routes with it, and up gives back the kernel's
      yield* broken("pod interface down", backend.setLink(ns, "eth0", { up: false }),
        backend.setLink(ns, "eth0", { up: true }).pipe(
          // and IPv6 addresses (keep_addr_on_down is off)
          Effect.andThen(backend.addAddress(ns, "eth0", "fd00:88::2/64")),
          Effect.andThen(podRoutesAsAdded)
        ), "eth0")
      const mac = add.json!.interfaces[1].mac as string
      yield* broken("pod MAC", backend.setLink(ns, "eth0", { mac: "0a:58:0a:58:00:99" }), backend.setLink(ns, "eth0", { mac }), "MAC 0a:58:0a:58:00:99")
      // last: the veth deleted (the pod's end goes with it), which nothing repairs here
      yield* backend.deleteLink(HOST_NETNS, VETH)
      const gone = yield* check()
      expect([gone.exitCode, String(gone.json?.msg)]).toEqual([1, expect.stringContaining(VETH)])
    }))
  })

  test("CHECK refuses a prevResult that does not name the pod's interface in its namespace", async () => {
    const w = world()
    await run(w, Effect.gen(function*() {
      const ns = yield* pod("p1")
      const add = yield* invoke(env("ADD", "c1", ns), CONF)
      const elsewhere = { ...add.json, interfaces: [add.json!.interfaces[0], { ...add.json!.interfaces[1], sandbox: "/var/run/netns/other" }] }
      const out = yield* invoke(env("CHECK", "c1", ns), { ...CONF, prevResult: elsewhere })
      expect([out.exitCode, out.json?.msg]).toEqual([1, `CHECK failed at vethPair: prevResult has no interface eth0 in ${ns}`])
    }))
  })

  test("CHECK of a pod whose namespace is gone (or never was one) is code 3: the container does not exist", async () => {
    const w = world()
    await run(w, Effect.gen(function*() {
      const backend = yield* Backend
      const ns = yield* pod("p1")
      const add = yield* invoke(env("ADD", "c1", ns), CONF)
      yield* backend.deleteNetns(ns)
      for (const netns of [ns, "/proc/1/ns/pid"]) {
        const out = yield* invoke(env("CHECK", "c1", netns), { ...CONF, prevResult: add.json })
        expect([out.exitCode, out.json?.code, out.json?.msg]).toEqual([1, 3, `CNI_NETNS ${netns} is not a network namespace`])
      }
    }))
  })

  test("GC removes the veth, masquerade and IP of attachments no longer valid (a veth a killed ADD left too); without the list, nothing", async () => {
    const w = world()
    await run(w, Effect.gen(function*() {
      const backend = yield* Backend
      const ns1 = yield* pod("p1")
      const ns2 = yield* pod("p2")
      const ns3 = yield* pod("p3")
      yield* invoke(env("ADD", "c1", ns1), CONF)
      yield* invoke(env("ADD", "c2", ns2), CONF)
      // what an ADD killed right after vethPair leaves: an aliased veth, nothing else
      const veth3 = hostVethName("c3", "eth0")
      yield* backend.createVeth({ netns: HOST_NETNS, name: veth3, peerNetns: ns3, peerName: "eth0" })
      yield* backend.setLink(HOST_NETNS, veth3, { alias: "tscni:podnet/c3/eth0" })
      // another network's veth, and a stranger's: never ours
      yield* backend.createVeth({ netns: HOST_NETNS, name: "veth-other", peerNetns: HOST_NETNS, peerName: "veth-other-p" })
      yield* backend.setLink(HOST_NETNS, "veth-other", { alias: "tscni:othernet/c1/eth0" })
      const names = () => Effect.map(backend.listLinks(HOST_NETNS), (links) => links.map((l) => l.name).sort())
      const all = yield* names()
      const { "cni.dev/valid-attachments": _none, ...withoutList } = { ...CONF, cniVersion: "1.1.0", "cni.dev/valid-attachments": [] }
      expect((yield* invoke({ CNI_COMMAND: "GC", CNI_PATH: "/opt/cni/bin" }, withoutList)).exitCode).toBe(0)
      expect(yield* names()).toEqual(all)

      const out = yield* gc(CONF, [["c2", "eth0"]])
      expect([out.exitCode, out.stdout]).toEqual([0, ""])
      expect(yield* names()).toEqual(["lo", hostVethName("c2", "eth0"), "veth-other", "veth-other-p"].sort())
      const other = ruleOwner("podnet", "c2", "eth0")
      expect(yield* masqElements).toEqual([`own4 { 10.88.0.3 . 10.88.0.0/24 } ${other}`, `pods4 { 10.88.0.3 } ${other}`])
      expect([...w.ipam.allocations().keys()]).toEqual(["c2/eth0"])
      // none valid: the network's masquerade table goes with its last element
      expect((yield* gc(CONF, [])).exitCode).toBe(0)
      expect(yield* backend.listNftTables(HOST_NETNS, "tscni-")).toEqual([])
    }))
  })

  test("STATUS is the IPAM plugin's", async () => {
    const w = world()
    await run(w, Effect.gen(function*() {
      const status = (conf: Json) => invoke({ CNI_COMMAND: "STATUS", CNI_PATH: "/opt/cni/bin" }, { ...conf, cniVersion: "1.1.0" })
      expect([(yield* status(CONF)).exitCode]).toEqual([0])
      const missing = yield* status({ ...CONF, ipam: { type: "no-such-ipam" } })
      expect([missing.exitCode, missing.json?.code]).toEqual([1, 5])
      expect(w.exec.calls().map((call) => `${call.env.CNI_COMMAND} ${call.path}`)).toEqual(["STATUS /opt/cni/bin/fake-ipam"])
    }))
  })
})

describe("ptp with ipMasqBackend iptables on the mock kernel", () => {
  const IPT = { ...CONF, ipMasqBackend: "iptables" }
  const nat = { family: 4, table: "nat" } as const
  const chain = (container: string) => masqueradeChain(attachmentKey(container, "eth0"))
  const masqRules = Effect.map(Backend.use((backend) => backend.listIptablesRules(HOST_NETNS, nat)), (listing) =>
    listing.rules.map((r) => `${r.chain}: ${r.args.join(" ")}`))

  test("ADD masquerades in a chain of the pod's own; CHECK verifies it; DEL (twice, without the namespace) and GC remove it", async () => {
    const w = world()
    await run(w, Effect.gen(function*() {
      const backend = yield* Backend
      const ns1 = yield* pod("p1")
      const ns2 = yield* pod("p2")
      const add1 = yield* invoke(env("ADD", "c1", ns1), IPT)
      const add2 = yield* invoke(env("ADD", "c2", ns2), IPT)
      expect([add1.exitCode, add2.exitCode]).toEqual([0, 0])
      expect((yield* masqRules).sort()).toEqual([
        "POSTROUTING: -j TSCNI-MASQ",
        `${chain("c1")}: -s 10.88.0.2/32 -d 10.88.0.0/24 -j RETURN`,
        `${chain("c1")}: -s 10.88.0.2/32 ! -d 224.0.0.0/4 -j MASQUERADE`,
        `${chain("c2")}: -s 10.88.0.3/32 -d 10.88.0.0/24 -j RETURN`,
        `${chain("c2")}: -s 10.88.0.3/32 ! -d 224.0.0.0/4 -j MASQUERADE`,
        `TSCNI-MASQ: -j ${chain("c1")}`,
        `TSCNI-MASQ: -j ${chain("c2")}`
      ].sort())
      expect(yield* backend.listNftTables(HOST_NETNS, "tscni-")).toEqual([])
      expect((yield* invoke(env("CHECK", "c1", ns1), { ...IPT, prevResult: add1.json })).exitCode).toBe(0)
      yield* backend.deleteIptablesPodChains(HOST_NETNS, { ...nat, comment: OWNER, chains: [{ name: chain("c1"), entry: "TSCNI-MASQ" }] })
      const broken = yield* invoke(env("CHECK", "c1", ns1), { ...IPT, prevResult: add1.json })
      expect([broken.exitCode, broken.json?.msg]).toEqual([1, expect.stringContaining(`has no chain ${chain("c1")}`)])
      yield* backend.deleteNetns(ns1)
      for (const netns of [ns1, ""]) expect((yield* invoke(env("DEL", "c1", netns), { ...IPT, prevResult: add1.json })).exitCode).toBe(0)
      expect((yield* masqRules).filter((rule) => rule.includes(chain("c1")))).toEqual([])
      expect((yield* gc(IPT, [])).exitCode).toBe(0)
      expect(yield* masqRules).toEqual(["POSTROUTING: -j TSCNI-MASQ"])
      expect([...w.ipam.allocations()]).toEqual([])
    }))
  })
})
