import { HOST_NETNS } from "@tscni/backend"
import { describe, expect, test } from "bun:test"
import { failure, fresh, ok, reason } from "./helpers.ts"

const setup = () => {
  const kernel = fresh()
  const ns = ok(kernel.backend.createNetns("a"))
  return { ...kernel, ns }
}

describe("links", () => {
  test("ifindexes increase per namespace; the veth peer is registered first", () => {
    const { backend, ns } = setup()
    const d0 = ok(backend.createLink({ netns: HOST_NETNS, name: "d0", kind: "dummy" }))
    const { link, peer } = ok(backend.createVeth({ netns: HOST_NETNS, name: "v0", peerNetns: HOST_NETNS, peerName: "v0p" }))
    expect([d0.index, peer.index, link.index]).toEqual([2, 3, 4])
    const other = ok(backend.createVeth({ netns: HOST_NETNS, name: "v1", peerNetns: ns, peerName: "eth0" }))
    expect(other.peer.index).toBe(2)
    expect(other.link.index).toBe(5)
    ok(backend.deleteLink(HOST_NETNS, "v1"))
    expect(ok(backend.createLink({ netns: HOST_NETNS, name: "d1", kind: "dummy" })).index).toBe(6)
  })

  test("links get defaults and distinct locally administered MACs", () => {
    const { backend } = setup()
    const bridge = ok(backend.createLink({ netns: HOST_NETNS, name: "br0", kind: "bridge" }))
    const ifb = ok(backend.createLink({ netns: HOST_NETNS, name: "ifb0", kind: "ifb", mtu: 9000, mac: "02:AB:CD:EF:00:01" }))
    expect(bridge).toMatchObject({ kind: "bridge", up: false, mtu: 1500, txqlen: 1000, promisc: false, allmulti: false })
    expect(ifb).toMatchObject({ mtu: 9000, mac: "02:ab:cd:ef:00:01" })
    expect(bridge.mac).toMatch(/^02:/)
    expect(bridge.master).toBeUndefined()
    expect(bridge.peerIndex).toBeUndefined()
  })

  test("invalid names, MTUs and MACs are Invalid", () => {
    const { backend, ns } = setup()
    for (const name of ["", "a".repeat(16), "a/b", "a b", "a\tb", "a:b", ".", ".."]) {
      expect(reason(backend.createLink({ netns: HOST_NETNS, name, kind: "dummy" }))).toBe("Invalid")
    }
    expect(reason(backend.createLink({ netns: HOST_NETNS, name: "d0", kind: "dummy", mtu: 67 }))).toBe("Invalid")
    expect(reason(backend.createLink({ netns: HOST_NETNS, name: "d0", kind: "dummy", mtu: 65536 }))).toBe("Invalid")
    expect(reason(backend.createLink({ netns: HOST_NETNS, name: "d0", kind: "dummy", mac: "zz" }))).toBe("Invalid")
    expect(reason(backend.createLink({ netns: HOST_NETNS, name: "d0", kind: "dummy", mac: "00:00:00:00:00:00" }))).toBe("Invalid")
    expect(reason(backend.createVeth({ netns: HOST_NETNS, name: "v0", peerNetns: ns, peerName: "eth0", peerMac: "03:00:00:00:00:01" }))).toBe("Invalid")
    expect(ok(backend.listLinks(HOST_NETNS)).map((l) => l.name)).toEqual(["lo"])
    expect(ok(backend.listLinks(ns)).map((l) => l.name)).toEqual(["lo"])
  })

  test("a veth with both ends of one name in one namespace is refused", () => {
    const { backend } = setup()
    expect(reason(backend.createVeth({ netns: HOST_NETNS, name: "v0", peerNetns: HOST_NETNS, peerName: "v0" }))).toBe("AlreadyExists")
    expect(ok(backend.listLinks(HOST_NETNS))).toHaveLength(1)
  })

  test("lo cannot be deleted, moved, or get a MAC", () => {
    const { backend, ns } = setup()
    expect(failure(backend.deleteLink(ns, "lo"))).toMatchObject({ reason: "Unsupported", errno: "EOPNOTSUPP" })
    expect(reason(backend.moveLink(ns, "lo", HOST_NETNS, "lo2"))).toBe("Invalid")
    expect(reason(backend.setLink(ns, "lo", { mac: "02:00:00:00:00:01" }))).toBe("Unsupported")
  })

  test("setLink validates everything before changing anything", () => {
    const { backend, control } = setup()
    ok(backend.createLink({ netns: HOST_NETNS, name: "d0", kind: "dummy" }))
    const before = control.snapshot()
    expect(reason(backend.setLink(HOST_NETNS, "d0", { up: true, mtu: 1400, hairpin: true }))).toBe("Invalid")
    expect(reason(backend.setLink(HOST_NETNS, "d0", { up: true, txqlen: -1 }))).toBe("Invalid")
    expect(reason(backend.setLink(HOST_NETNS, "d0", { up: true, mtu: 1400, master: "nope" }))).toBe("NotFound")
    expect(control.diff(before, control.snapshot())).toEqual([])
  })

  test("master: a bridge only, not itself, not a bridge or lo as port; flags reset on a new master", () => {
    const { backend } = setup()
    const br0 = ok(backend.createLink({ netns: HOST_NETNS, name: "br0", kind: "bridge" }))
    const br1 = ok(backend.createLink({ netns: HOST_NETNS, name: "br1", kind: "bridge" }))
    ok(backend.createLink({ netns: HOST_NETNS, name: "d0", kind: "dummy" }))
    expect(reason(backend.setLink(HOST_NETNS, "br0", { master: "br0" }))).toBe("Invalid")
    expect(reason(backend.setLink(HOST_NETNS, "br0", { master: "br1" }))).toBe("Invalid")
    expect(reason(backend.setLink(HOST_NETNS, "lo", { master: "br1" }))).toBe("Invalid")
    expect(reason(backend.setLink(HOST_NETNS, "d0", { master: "lo" }))).toBe("Invalid")
    // master and port flags in one call
    expect(ok(backend.setLink(HOST_NETNS, "d0", { master: "br0", hairpin: true }))).toMatchObject({
      master: br0.index,
      bridgePort: { hairpin: true, isolated: false }
    })
    // same master again keeps the flags; another master resets them
    expect(ok(backend.setLink(HOST_NETNS, "d0", { master: "br0" })).bridgePort).toEqual({ hairpin: true, isolated: false })
    expect(ok(backend.setLink(HOST_NETNS, "d0", { master: "br1" }))).toMatchObject({
      master: br1.index,
      bridgePort: { hairpin: false, isolated: false }
    })
    // releasing and setting a flag at once is refused
    expect(reason(backend.setLink(HOST_NETNS, "d0", { master: null, isolated: true }))).toBe("Invalid")
    expect(ok(backend.setLink(HOST_NETNS, "d0", { master: null })).master).toBeUndefined()
    expect(ok(backend.setLink(HOST_NETNS, "d0", { master: null })).master).toBeUndefined()
  })

  test("moveLink drops addresses, routes, qdiscs, redirects, master and resets sysctls", () => {
    const { backend, control, ns } = setup()
    ok(backend.createLink({ netns: HOST_NETNS, name: "br0", kind: "bridge" }))
    ok(backend.createLink({ netns: HOST_NETNS, name: "ifb0", kind: "ifb" }))
    ok(backend.createVeth({ netns: HOST_NETNS, name: "v0", peerNetns: HOST_NETNS, peerName: "v0p" }))
    const before = control.snapshot()
    ok(backend.setLink(HOST_NETNS, "v0p", { up: true, master: "br0", hairpin: true, promisc: true }))
    ok(backend.addAddress(HOST_NETNS, "v0p", "10.1.0.2/24"))
    ok(backend.addRoute(HOST_NETNS, { dst: "10.9.0.0/16", gateway: "10.1.0.1" }))
    ok(backend.addQdisc(HOST_NETNS, { link: "v0p", kind: "ingress", parent: "ingress" }))
    ok(backend.addRedirect(HOST_NETNS, { link: "v0p", toLink: "ifb0" }))
    ok(backend.writeSysctl(HOST_NETNS, "net.ipv4.conf.v0p.arp_notify", "1"))
    const moved = ok(backend.moveLink(HOST_NETNS, "v0p", ns, "eth0"))
    expect(moved).toMatchObject({ netns: ns, name: "eth0", up: false, promisc: true })
    expect(moved.master).toBeUndefined()
    expect(moved.bridgePort).toBeUndefined()
    expect(ok(backend.readSysctl(ns, "net.ipv4.conf.eth0.arp_notify"))).toBe("0")
    expect(reason(backend.readSysctl(HOST_NETNS, "net.ipv4.conf.v0p.arp_notify"))).toBe("NotFound")
    expect(ok(backend.listQdiscs(ns, "eth0"))).toEqual([])
    const lines = control.diff(before, control.snapshot())
    // in the host only the moved link's disappearance is left (the route went with it)
    expect(lines.filter((l) => l.startsWith("host:"))).toEqual([
      "host: - link v0p (veth, index 4)",
      "host: - sysctl net.ipv4.conf.v0p.arp_notify (was 0)",
      "host: - sysctl net.ipv4.conf.v0p.route_localnet (was 0)",
      "host: - sysctl net.ipv6.conf.v0p.accept_dad (was 1)",
      "host: - sysctl net.ipv6.conf.v0p.disable_ipv6 (was 0)"
    ])
  })

  test("moveLink keeps the ifindex when it is free in the target, else allocates one", () => {
    const { backend, ns } = setup()
    const a = ok(backend.createLink({ netns: HOST_NETNS, name: "d0", kind: "dummy" }))
    expect(ok(backend.moveLink(HOST_NETNS, "d0", ns)).index).toBe(a.index)
    ok(backend.createLink({ netns: HOST_NETNS, name: "d1", kind: "dummy" }))
    ok(backend.createLink({ netns: HOST_NETNS, name: "d2", kind: "dummy" }))
    // index 3 is taken by d2 in the host... d0 (index 2) goes back to a free 2
    expect(ok(backend.moveLink(ns, "d0", HOST_NETNS)).index).toBe(2)
    ok(backend.createLink({ netns: ns, name: "x", kind: "dummy" }))
    const clash = ok(backend.moveLink(HOST_NETNS, "d2", ns))
    expect(clash.index).not.toBe(ok(backend.getLink(ns, "x")).index)
  })

  test("moveLink refuses bridges; within a namespace it renames, only while down", () => {
    const { backend, ns } = setup()
    ok(backend.createLink({ netns: HOST_NETNS, name: "br0", kind: "bridge" }))
    expect(reason(backend.moveLink(HOST_NETNS, "br0", ns))).toBe("Invalid")
    ok(backend.createLink({ netns: HOST_NETNS, name: "d0", kind: "dummy" }))
    ok(backend.addAddress(HOST_NETNS, "d0", "10.1.0.2/24"))
    ok(backend.writeSysctl(HOST_NETNS, "net.ipv4.conf.d0.arp_notify", "1"))
    expect(ok(backend.moveLink(HOST_NETNS, "d0", HOST_NETNS)).name).toBe("d0")
    expect(reason(backend.moveLink(HOST_NETNS, "d0", HOST_NETNS, "br0"))).toBe("AlreadyExists")
    const renamed = ok(backend.moveLink(HOST_NETNS, "d0", HOST_NETNS, "d9"))
    expect(renamed.name).toBe("d9")
    expect(ok(backend.listAddresses(HOST_NETNS, "d9")).map((a) => a.cidr)).toEqual(["10.1.0.2/24"])
    expect(ok(backend.readSysctl(HOST_NETNS, "net.ipv4.conf.d9.arp_notify"))).toBe("1")
    ok(backend.setLink(HOST_NETNS, "d9", { up: true }))
    expect(reason(backend.moveLink(HOST_NETNS, "d9", HOST_NETNS, "d0"))).toBe("Busy")
    expect(reason(backend.moveLink(HOST_NETNS, "d9", ns, "a".repeat(16)))).toBe("Invalid")
  })

  test("deleting a veth end removes both ends' addresses, routes, qdiscs and sysctls", () => {
    const { backend, control, ns } = setup()
    const before = control.snapshot()
    ok(backend.createVeth({ netns: HOST_NETNS, name: "v0", peerNetns: ns, peerName: "eth0" }))
    ok(backend.setLink(ns, "eth0", { up: true }))
    ok(backend.addAddress(ns, "eth0", "10.1.0.2/24"))
    ok(backend.addRoute(ns, { dst: "0.0.0.0/0", gateway: "10.1.0.1" }))
    ok(backend.addQdisc(ns, { link: "eth0", kind: "tbf", parent: "root", tbf: { rate: 1, burst: 1, limit: 1 } }))
    ok(backend.deleteLink(HOST_NETNS, "v0"))
    expect(control.diff(before, control.snapshot())).toEqual([])
  })
})
