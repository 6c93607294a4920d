import { HOST_NETNS } from "@tscni/backend"
import { describe, expect, test } from "bun:test"
import { fresh, ok, reason } from "./helpers.ts"

describe("namespaces", () => {
  test("the host namespace exists with lo up, its addresses and ::1 route", () => {
    const { backend } = fresh()
    expect(ok(backend.netnsExists(HOST_NETNS))).toBe(true)
    expect(ok(backend.listLinks(HOST_NETNS))).toEqual([
      {
        netns: HOST_NETNS,
        index: 1,
        name: "lo",
        kind: "loopback",
        up: true,
        mtu: 65536,
        mac: "00:00:00:00:00:00",
        txqlen: 1000,
        promisc: false,
        allmulti: false
      }
    ])
    expect(ok(backend.listAddresses(HOST_NETNS)).map((a) => a.cidr)).toEqual(["127.0.0.1/8", "::1/128"])
    expect(ok(backend.listRoutes(HOST_NETNS))).toEqual([{ dst: "::1/128", link: "lo", scope: "universe", priority: 256, protocol: "kernel" }])
  })

  test("sysctl seeds: bridge-nf only in the host namespace", () => {
    const { backend } = fresh()
    const ns = ok(backend.createNetns("a"))
    expect(ok(backend.readSysctl(HOST_NETNS, "net.bridge.bridge-nf-call-iptables"))).toBe("0")
    expect(ok(backend.readSysctl(HOST_NETNS, "net.bridge.bridge-nf-call-ip6tables"))).toBe("0")
    expect(reason(backend.readSysctl(ns, "net.bridge.bridge-nf-call-iptables"))).toBe("NotFound")
    for (const key of ["net.ipv4.ip_forward", "net.ipv6.conf.all.forwarding", "net.ipv4.conf.all.route_localnet"]) {
      expect(ok(backend.readSysctl(ns, key))).toBe("0")
    }
    expect(ok(backend.readSysctl(ns, "net.ipv6.conf.lo.accept_dad"))).toBe("1")
  })

  test("createNetns returns /var/run/netns/NAME holding lo, down, without addresses", () => {
    const { backend } = fresh()
    const ns = ok(backend.createNetns("pod1"))
    expect(ns).toBe("/var/run/netns/pod1")
    expect(ok(backend.getLink(ns, "lo"))).toMatchObject({ index: 1, up: false, kind: "loopback" })
    expect(ok(backend.listAddresses(ns))).toEqual([])
    expect(reason(backend.createNetns("pod1"))).toBe("AlreadyExists")
    expect(reason(backend.createNetns("a/b"))).toBe("Invalid")
    expect(reason(backend.createNetns(""))).toBe("Invalid")
  })

  test("lo up brings 127.0.0.1/8 and ::1/128; down keeps only the IPv4 one", () => {
    const { backend } = fresh()
    const ns = ok(backend.createNetns("a"))
    ok(backend.setLink(ns, "lo", { up: true }))
    expect(ok(backend.listAddresses(ns, "lo")).map((a) => a.cidr)).toEqual(["127.0.0.1/8", "::1/128"])
    ok(backend.setLink(ns, "lo", { up: false }))
    expect(ok(backend.listAddresses(ns, "lo")).map((a) => a.cidr)).toEqual(["127.0.0.1/8"])
    expect(ok(backend.listRoutes(ns))).toEqual([])
    ok(backend.setLink(ns, "lo", { up: true }))
    expect(ok(backend.listAddresses(ns, "lo")).map((a) => a.cidr)).toEqual(["127.0.0.1/8", "::1/128"])
  })

  test("operations on a missing namespace fail with NotFound; netnsExists says false", () => {
    const { backend } = fresh()
    const gone = "/var/run/netns/gone"
    expect(ok(backend.netnsExists(gone))).toBe(false)
    expect(reason(backend.deleteNetns(gone))).toBe("NotFound")
    expect(reason(backend.listLinks(gone))).toBe("NotFound")
    expect(reason(backend.createLink({ netns: gone, name: "d0", kind: "dummy" }))).toBe("NotFound")
    expect(reason(backend.createVeth({ netns: HOST_NETNS, name: "v0", peerNetns: gone, peerName: "eth0" }))).toBe("NotFound")
    expect(reason(backend.getLink(HOST_NETNS, "v0"))).toBe("NotFound")
    expect(reason(backend.addRoute(gone, { dst: "0.0.0.0/0", gateway: "10.0.0.1" }))).toBe("NotFound")
    expect(reason(backend.readSysctl(gone, "net.ipv4.ip_forward"))).toBe("NotFound")
    expect(reason(backend.listFilterRules(gone, { family: "ip", name: "t" }))).toBe("NotFound")
    expect(reason(backend.moveLink(HOST_NETNS, "lo", gone))).toBe("NotFound")
  })

  test("the host namespace cannot be deleted", () => {
    const { backend } = fresh()
    expect(reason(backend.deleteNetns(HOST_NETNS))).toBe("Invalid")
  })

  test("deleteNetns destroys the veth end outside it, with everything hanging off it", () => {
    const { backend, control } = fresh()
    const before = control.snapshot()
    const ns = ok(backend.createNetns("a"))
    ok(backend.createVeth({ netns: HOST_NETNS, name: "veth0", peerNetns: ns, peerName: "eth0" }))
    ok(backend.setLink(HOST_NETNS, "veth0", { up: true }))
    ok(backend.addAddress(HOST_NETNS, "veth0", "10.1.0.1/24"))
    ok(backend.addRoute(HOST_NETNS, { dst: "10.2.0.0/16", gateway: "10.1.0.2" }))
    ok(backend.writeSysctl(HOST_NETNS, "net.ipv4.conf.veth0.route_localnet", "1"))
    ok(backend.deleteNetns(ns))
    expect(control.diff(before, control.snapshot())).toEqual([])
  })
})
