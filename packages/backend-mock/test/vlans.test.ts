import { HOST_NETNS } from "@tscni/backend"
import { describe, expect, test } from "bun:test"
import { makeMockBackend } from "../src/index.ts"
import { failure, ok, reason } from "./helpers.ts"

const withPort = (vlanFiltering: "supported" | "unsupported" = "supported") => {
  const kernel = makeMockBackend({ vlanFiltering })
  ok(kernel.backend.createLink({ netns: HOST_NETNS, name: "br0", kind: "bridge" }))
  ok(kernel.backend.createVeth({ netns: HOST_NETNS, name: "veth0", peerNetns: HOST_NETNS, peerName: "veth0p" }))
  ok(kernel.backend.setLink(HOST_NETNS, "veth0", { master: "br0" }))
  return kernel
}

describe("bridge VLANs", () => {
  test("a port gets the default VLAN; moving to another bridge starts over; moving netns drops them", () => {
    const { backend } = withPort()
    ok(backend.createLink({ netns: HOST_NETNS, name: "br1", kind: "bridge" }))
    ok(backend.addBridgeVlan(HOST_NETNS, "veth0", { vid: 10, pvid: true, untagged: false }))
    ok(backend.setLink(HOST_NETNS, "veth0", { master: "br0" }))
    expect(ok(backend.listBridgeVlans(HOST_NETNS, "veth0")).map((v) => v.vid)).toEqual([1, 10])
    ok(backend.setLink(HOST_NETNS, "veth0", { master: "br1" }))
    expect(ok(backend.listBridgeVlans(HOST_NETNS, "veth0"))).toEqual([{ vid: 1, pvid: true, untagged: true }])
    ok(backend.addBridgeVlan(HOST_NETNS, "veth0", { vid: 10, pvid: false, untagged: false }))
    const ns = ok(backend.createNetns("a"))
    const moved = ok(backend.moveLink(HOST_NETNS, "veth0", ns))
    expect(moved.master).toBeUndefined()
    expect(ok(backend.listBridgeVlans(ns, "veth0"))).toEqual([])
  })

  test("deleting the bridge drops its ports' VLANs", () => {
    const { backend } = withPort()
    ok(backend.addBridgeVlan(HOST_NETNS, "veth0", { vid: 10, pvid: false, untagged: false }))
    ok(backend.deleteLink(HOST_NETNS, "br0"))
    expect(ok(backend.listBridgeVlans(HOST_NETNS, "veth0"))).toEqual([])
  })

  test("without VLAN support: Unsupported with the kernel's errno, nothing changes", () => {
    const { backend, control } = withPort("unsupported")
    const before = control.snapshot()
    expect(failure(backend.addBridgeVlan(HOST_NETNS, "veth0", { vid: 10, pvid: true, untagged: true }))).toMatchObject({
      reason: "Unsupported",
      errno: "EOPNOTSUPP"
    })
    expect(failure(backend.createLink({ netns: HOST_NETNS, name: "br9", kind: "bridge", vlanFiltering: true })).message).toContain(
      "CONFIG_BRIDGE_VLAN_FILTERING"
    )
    expect(control.diff(before, control.snapshot())).toEqual([])
    // a bridge without filtering is fine
    expect(ok(backend.createLink({ netns: HOST_NETNS, name: "br9", kind: "bridge", vlanFiltering: false })).vlanFiltering).toBe(false)
  })

  test("new operations take part in fault injection", () => {
    const { backend, control } = withPort()
    control.failWhen((call) => call.operation === "addBridgeVlan")
    expect(reason(backend.addBridgeVlan(HOST_NETNS, "veth0", { vid: 10, pvid: false, untagged: false }))).toBe("Injected")
    control.clearFaults()
    control.failNth(1, "Busy")
    expect(reason(backend.deleteBridgeVlan(HOST_NETNS, "veth0", 1))).toBe("Busy")
    expect(ok(backend.listBridgeVlans(HOST_NETNS, "veth0"))).toHaveLength(1)
    expect(control.calls().map((c) => c.operation).slice(-3)).toEqual(["addBridgeVlan", "deleteBridgeVlan", "listBridgeVlans"])
  })
})

describe("snapshots cover the new state", () => {
  test("VLANs beyond the default, alias and vlanFiltering show in the diff; the implied default VLAN does not", () => {
    const { backend, control } = makeMockBackend()
    const before = control.snapshot()
    ok(backend.createLink({ netns: HOST_NETNS, name: "br0", kind: "bridge", vlanFiltering: true, alias: "tscni:net" }))
    ok(backend.createLink({ netns: HOST_NETNS, name: "ifb0", kind: "ifb" }))
    ok(backend.setLink(HOST_NETNS, "ifb0", { master: "br0" }))
    const created = control.snapshot()
    expect(created.namespaces[HOST_NETNS]?.bridgeVlans).toEqual([
      { link: "br0", vid: 1, pvid: true, untagged: true },
      { link: "ifb0", vid: 1, pvid: true, untagged: true }
    ])
    expect(control.diff(before, created)).toEqual([
      "host: + link br0 (bridge, index 2)",
      "host: + link ifb0 (ifb, index 3)",
      "host: + sysctl net.ipv4.conf.br0.arp_notify = 0",
      "host: + sysctl net.ipv4.conf.br0.route_localnet = 0",
      "host: + sysctl net.ipv4.conf.ifb0.arp_notify = 0",
      "host: + sysctl net.ipv4.conf.ifb0.route_localnet = 0",
      "host: + sysctl net.ipv6.conf.br0.accept_dad = 1",
      "host: + sysctl net.ipv6.conf.br0.disable_ipv6 = 0",
      "host: + sysctl net.ipv6.conf.ifb0.accept_dad = 1",
      "host: + sysctl net.ipv6.conf.ifb0.disable_ipv6 = 0"
    ])
    ok(backend.addBridgeVlan(HOST_NETNS, "ifb0", { vid: 10, pvid: true, untagged: true }))
    ok(backend.setLink(HOST_NETNS, "br0", { alias: "" }))
    expect(control.diff(created, control.snapshot())).toEqual([
      'host: ~ link br0 alias: "tscni:net" → (none)',
      "host: - bridge vlan ifb0 vid 1 pvid untagged",
      "host: + bridge vlan ifb0 vid 1 untagged",
      "host: + bridge vlan ifb0 vid 10 pvid untagged"
    ])
    // releasing the port: its extra VLAN goes with the membership
    const tagged = control.snapshot()
    ok(backend.setLink(HOST_NETNS, "ifb0", { master: null }))
    expect(control.diff(tagged, control.snapshot())).toEqual([
      "host: ~ link ifb0 bridgePort: {\"hairpin\":false,\"isolated\":false} → (none)",
      "host: ~ link ifb0 master: 2 → (none)",
      "host: - bridge vlan ifb0 vid 1 untagged",
      "host: - bridge vlan ifb0 vid 10 pvid untagged"
    ])
  })

  test("a connected route replaced by an identical one of ours shows as a protocol change", () => {
    const { backend, control } = makeMockBackend()
    ok(backend.createLink({ netns: HOST_NETNS, name: "d0", kind: "dummy" }))
    ok(backend.setLink(HOST_NETNS, "d0", { up: true }))
    ok(backend.addAddress(HOST_NETNS, "d0", "10.1.0.2/24"))
    const before = control.snapshot()
    ok(backend.deleteRoute(HOST_NETNS, { dst: "10.1.0.0/24", link: "d0" }))
    ok(backend.addRoute(HOST_NETNS, { dst: "10.1.0.0/24", link: "d0", src: "10.1.0.2" }))
    expect(control.diff(before, control.snapshot())).toEqual([
      "host: ~ route 10.1.0.0/24 dev d0 scope link src 10.1.0.2 protocol: kernel → boot"
    ])
  })
})

describe("packet filter families", () => {
  test("bridge and netdev rules are kept with their family; invalid base chains add nothing", () => {
    const { backend } = makeMockBackend()
    const spoof = {
      family: "bridge" as const,
      table: "tscni-mac",
      chain: "prerouting",
      rule: 'iifname "veth0" ether saddr != 0a:58:0a:01:00:02 drop',
      comment: "c1",
      baseChain: { type: "filter" as const, hook: "prerouting" as const, priority: -300 }
    }
    expect(reason(backend.addFilterRules(HOST_NETNS, [spoof, { ...spoof, baseChain: { ...spoof.baseChain, type: "nat" } }]))).toBe(
      "Invalid"
    )
    expect(
      reason(backend.addFilterRules(HOST_NETNS, [{ ...spoof, baseChain: { ...spoof.baseChain, device: "veth0" } }]))
    ).toBe("Invalid")
    expect(ok(backend.listFilterRules(HOST_NETNS, { family: "bridge", name: "tscni-mac" }))).toEqual([])
    ok(backend.addFilterRules(HOST_NETNS, [spoof]))
    expect(ok(backend.listFilterRules(HOST_NETNS, { family: "bridge", name: "tscni-mac" }))).toEqual([spoof])
  })
})
