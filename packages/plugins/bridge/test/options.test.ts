import { describe, expect, test } from "bun:test"
import { Effect, Layer } from "effect"
import { Backend, HOST_NETNS } from "@tscni/backend"
import * as MockBackend from "@tscni/backend-mock"
import { handleInvocation } from "@tscni/skel"
import { makeFakeIpam } from "@tscni/steps/testing/fakeIpam"
import type { PluginExec } from "@tscni/steps"
import { makeFakePluginExec } from "@tscni/steps/testing/fakePluginExec"
import { hostVethName, macSpoofTable } from "../src/index.ts"
import { bridgePlugin } from "../src/plugin.ts"

type Json = Record<string, any>

const BASE = { cniVersion: "1.0.0", name: "opts", type: "bridge", bridge: "br-opts", ipam: { type: "fake-ipam" } }

/** ADD one pod with `extra` keys on a fresh mock kernel and hand the kernel to `inspect`. */
const addWith = (extra: Json, inspect: (ns: string, result: Json) => Effect.Effect<void, unknown, Backend | PluginExec>) => {
  const ipam = makeFakeIpam("10.77.0")
  const layer = Layer.mergeAll(MockBackend.layer, makeFakePluginExec({ "fake-ipam": ipam.plugin }).layer)
  return Effect.runPromise(Effect.gen(function*() {
    const ns = yield* Backend.use((backend) => backend.createNetns("pod"))
    const conf = { ...BASE, ...extra }
    const env = { CNI_COMMAND: "ADD", CNI_CONTAINERID: "c1", CNI_NETNS: ns, CNI_IFNAME: "eth0", CNI_PATH: "/opt/cni/bin" }
    const outcome = yield* handleInvocation(bridgePlugin, { env, stdin: Effect.succeed(JSON.stringify(conf)) })
    expect(outcome.exitCode).toBe(0)
    yield* inspect(ns, JSON.parse(outcome.stdout) as Json)
  }).pipe(Effect.provide(layer)))
}

const VETH = hostVethName("c1", "eth0")

describe("bridge options", () => {
  test("defaults: no gateway address, no forwarding change, no masquerade, hairpin off", () =>
    addWith({}, (ns) => Effect.gen(function*() {
      const backend = yield* Backend
      expect(yield* backend.listAddresses(HOST_NETNS, "br-opts")).toEqual([])
      expect(yield* backend.readSysctl(HOST_NETNS, "net.ipv4.ip_forward")).toBe("0")
      expect(yield* backend.listNftTables(HOST_NETNS, "tscni-")).toEqual([])
      expect((yield* backend.getLink(HOST_NETNS, VETH)).bridgePort).toEqual({ hairpin: false, isolated: false })
      // routes from IPAM still go via the IPAM gateway
      expect(yield* backend.listRoutes(ns)).toContainEqual(expect.objectContaining({ dst: "0.0.0.0/0", gateway: "10.77.0.1" }))
    })))

  test("mtu applies to both veth ends and a new bridge", () =>
    addWith({ mtu: 1400 }, (ns) => Effect.gen(function*() {
      const backend = yield* Backend
      expect((yield* backend.getLink(HOST_NETNS, VETH)).mtu).toBe(1400)
      expect((yield* backend.getLink(ns, "eth0")).mtu).toBe(1400)
      expect((yield* backend.getLink(HOST_NETNS, "br-opts")).mtu).toBe(1400)
    })))

  test("promiscMode puts the bridge in promiscuous mode; portIsolation isolates the port", () =>
    addWith({ promiscMode: true, portIsolation: true }, () => Effect.gen(function*() {
      const backend = yield* Backend
      expect((yield* backend.getLink(HOST_NETNS, "br-opts")).promisc).toBe(true)
      expect((yield* backend.getLink(HOST_NETNS, VETH)).bridgePort).toEqual({ hairpin: false, isolated: true })
    })))

  test("without IPAM: an L2 port, no addresses, no routes", () =>
    addWith({ ipam: undefined }, (ns, result) => Effect.gen(function*() {
      const backend = yield* Backend
      expect(result.ips).toEqual([])
      expect(yield* backend.listAddresses(ns, "eth0")).toEqual([])
      expect((yield* backend.getLink(ns, "eth0")).up).toBe(true)
      // nothing to announce: arp_notify stays as the kernel made it (as with the reference)
      expect(yield* backend.readSysctl(ns, "net.ipv4.conf.eth0.arp_notify")).toBe("0")
    })))

  for (const [label, extra] of [["with a gateway", { isGateway: true }], ["without one", {}]] as const) {
    test(`arp_notify is on for the pod interface ${label}, and CHECK finds it turned off`, () =>
      addWith(extra, (ns, result) => Effect.gen(function*() {
        const backend = yield* Backend
        expect(yield* backend.readSysctl(ns, "net.ipv4.conf.eth0.arp_notify")).toBe("1")
        const check = () => handleInvocation(bridgePlugin, {
          env: { CNI_COMMAND: "CHECK", CNI_CONTAINERID: "c1", CNI_NETNS: ns, CNI_IFNAME: "eth0", CNI_PATH: "/opt/cni/bin" },
          stdin: Effect.succeed(JSON.stringify({ ...BASE, ...extra, prevResult: result }))
        })
        expect((yield* check()).exitCode).toBe(0)
        yield* backend.writeSysctl(ns, "net.ipv4.conf.eth0.arp_notify", "0")
        const broken = yield* check()
        expect([broken.exitCode, broken.stdout]).toEqual([1, expect.stringContaining("arp_notify")])
      })))
  }

  test("disableContainerInterface leaves the pod interface down", () =>
    addWith({ ipam: undefined, disableContainerInterface: true }, (ns) => Effect.gen(function*() {
      expect((yield* Backend.use((backend) => backend.getLink(ns, "eth0"))).up).toBe(false)
    })))

  test("an IPAM route without a gateway goes via the IPAM gateway; isDefaultGateway reports it", () =>
    addWith({ isDefaultGateway: true }, (ns, result) => Effect.gen(function*() {
      expect(result.routes).toEqual([{ dst: "0.0.0.0/0", gw: "10.77.0.1" }])
      expect((yield* Backend.use((backend) => backend.listAddresses(HOST_NETNS, "br-opts"))).map((a) => a.cidr)).toEqual(["10.77.0.1/24"])
      expect(yield* Backend.use((backend) => backend.listRoutes(ns))).toContainEqual(expect.objectContaining({ dst: "0.0.0.0/0", gateway: "10.77.0.1" }))
    })))
})

describe("bridge options: vlan and macspoofchk", () => {
  test("macspoofchk drops frames from the pod's port with another source MAC (bridge family)", () =>
    addWith({ macspoofchk: true }, (ns, result) => Effect.gen(function*() {
      const backend = yield* Backend
      const table = macSpoofTable(BASE.name)
      expect(table.family).toBe("bridge")
      expect(table.chains.map((chain) => chain.rules)).toEqual([["iifname @ports iifname . ether saddr != @allowed drop"]])
      const elements = yield* backend.listNftElements(HOST_NETNS, table)
      expect(elements.map((e) => `${e.set} { ${e.key} }`)).toEqual([`ports { "${VETH}" }`, `allowed { "${VETH}" . ${result.interfaces[2].mac} }`])
      expect((yield* backend.getLink(ns, "eth0")).mac).toBe(result.interfaces[2].mac)
    })))

  test("vlan puts the port on its VLAN (PVID, untagged) on a VLAN-filtering bridge and drops VLAN 1", () =>
    addWith({ vlan: 100, preserveDefaultVlan: false }, () => Effect.gen(function*() {
      const backend = yield* Backend
      expect((yield* backend.getLink(HOST_NETNS, "br-opts")).vlanFiltering).toBe(true)
      expect(yield* backend.listBridgeVlans(HOST_NETNS, VETH)).toEqual([{ vid: 100, pvid: true, untagged: true }])
    })))

  test("vlan on a kernel without VLAN filtering fails cleanly and leaves nothing", async () => {
    const ipam = makeFakeIpam("10.77.0")
    const layer = Layer.mergeAll(MockBackend.layerWith({ vlanFiltering: "unsupported" }), makeFakePluginExec({ "fake-ipam": ipam.plugin }).layer)
    await Effect.runPromise(Effect.gen(function*() {
      const mock = yield* MockBackend.MockControlService
      const ns = yield* Backend.use((backend) => backend.createNetns("pod"))
      const before = mock.snapshot()
      const env = { CNI_COMMAND: "ADD", CNI_CONTAINERID: "c1", CNI_NETNS: ns, CNI_IFNAME: "eth0", CNI_PATH: "/opt/cni/bin" }
      const outcome = yield* handleInvocation(bridgePlugin, { env, stdin: Effect.succeed(JSON.stringify({ ...BASE, vlan: 100 })) })
      expect(outcome.exitCode).toBe(1)
      expect(JSON.parse(outcome.stdout).msg).toContain("VLAN")
      expect(mock.diff(before, mock.snapshot())).toEqual([])
      expect(ipam.allocations().size).toBe(0)
    }).pipe(Effect.provide(layer)))
  })
})
