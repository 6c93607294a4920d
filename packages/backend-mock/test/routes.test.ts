import { HOST_NETNS } from "@tscni/backend"
import { describe, expect, test } from "bun:test"
import { failure, fresh, ok, reason } from "./helpers.ts"

/** a namespace with dummy d0 up and 10.1.0.2/24 on it */
const setup = () => {
  const kernel = fresh()
  const { backend } = kernel
  const ns = ok(backend.createNetns("a"))
  ok(backend.createLink({ netns: ns, name: "d0", kind: "dummy" }))
  ok(backend.setLink(ns, "d0", { up: true }))
  ok(backend.addAddress(ns, "d0", "10.1.0.2/24"))
  return { ...kernel, ns }
}

describe("addresses", () => {
  test("need their link, a valid CIDR; duplicates AlreadyExists, missing NotFound (EADDRNOTAVAIL)", () => {
    const { backend, ns } = setup()
    expect(reason(backend.addAddress(ns, "nope", "10.1.0.3/24"))).toBe("NotFound")
    for (const cidr of ["10.1.0.3", "10.1.0.3/33", "10.1.0/24", "010.1.0.3/24", "fd00::1::2/64", "fd00::1/129", "x"]) {
      expect(reason(backend.addAddress(ns, "d0", cidr))).toBe("Invalid")
    }
    expect(reason(backend.addAddress(ns, "d0", "10.1.0.2/24"))).toBe("AlreadyExists")
    // IPv4: another prefix length makes another address; IPv6: the address alone counts
    ok(backend.addAddress(ns, "d0", "10.1.0.2/16"))
    ok(backend.addAddress(ns, "d0", "fd00::2/64"))
    expect(reason(backend.addAddress(ns, "d0", "fd00::2/80"))).toBe("AlreadyExists")
    expect(failure(backend.deleteAddress(ns, "d0", "10.1.0.9/24"))).toMatchObject({ reason: "NotFound", errno: "EADDRNOTAVAIL" })
    expect(reason(backend.deleteAddress(ns, "d0", "fd00::2/80"))).toBe("NotFound")
  })

  test("are listed in canonical form, IPv4 before IPv6", () => {
    const { backend, ns } = setup()
    ok(backend.addAddress(ns, "d0", "FD00:0:0::0002/64"))
    ok(backend.addAddress(ns, "lo", "10.9.9.9/32"))
    expect(ok(backend.listAddresses(ns)).map((a) => `${a.link} ${a.cidr}`)).toEqual([
      "lo 10.9.9.9/32",
      "d0 10.1.0.2/24",
      "d0 fd00::2/64"
    ])
    ok(backend.deleteAddress(ns, "d0", "fd00::2/64"))
  })

  test("the same IPv4 address on two links is allowed", () => {
    const { backend, ns } = setup()
    ok(backend.createLink({ netns: ns, name: "d1", kind: "dummy" }))
    ok(backend.addAddress(ns, "d1", "10.1.0.2/24"))
    const holders = ok(backend.listAddresses(ns)).filter((a) => a.cidr === "10.1.0.2/24").map((a) => a.link)
    expect(holders.sort()).toEqual(["d0", "d1"])
  })

  test("IPv6 addresses go when the link goes down, IPv4 ones stay", () => {
    const { backend, ns } = setup()
    ok(backend.addAddress(ns, "d0", "fd00::2/64"))
    ok(backend.setLink(ns, "d0", { up: false }))
    expect(ok(backend.listAddresses(ns, "d0")).map((a) => a.cidr)).toEqual(["10.1.0.2/24"])
  })

  test("an IPv6 address on a link with disable_ipv6=1 is PermissionDenied; setting it drops IPv6", () => {
    const { backend, ns } = setup()
    ok(backend.addAddress(ns, "d0", "fd00::2/64"))
    expect(ok(backend.writeSysctl(ns, "net.ipv6.conf.d0.disable_ipv6", "1"))).toBe("0")
    expect(ok(backend.listAddresses(ns, "d0")).map((a) => a.cidr)).toEqual(["10.1.0.2/24"])
    expect(ok(backend.listRoutes(ns)).map((r) => r.dst)).toEqual(["10.1.0.0/24"])
    expect(reason(backend.addAddress(ns, "d0", "fd00::3/64"))).toBe("PermissionDenied")
  })
})

describe("connected routes", () => {
  test("IPv4: subnet dev scope link src; none for /32; IPv6: prefix metric 256", () => {
    const { backend, ns } = setup()
    ok(backend.addAddress(ns, "d0", "10.2.0.1/32"))
    ok(backend.addAddress(ns, "d0", "fd00::2/64"))
    expect(ok(backend.listRoutes(ns))).toEqual([
      { dst: "10.1.0.0/24", link: "d0", scope: "link", src: "10.1.0.2", protocol: "kernel" },
      { dst: "fd00::/64", link: "d0", scope: "universe", priority: 256, protocol: "kernel" }
    ])
  })

  test("appear when a link with addresses comes up, not before", () => {
    const { backend, ns } = setup()
    ok(backend.createLink({ netns: ns, name: "d1", kind: "dummy" }))
    ok(backend.addAddress(ns, "d1", "10.3.0.1/24"))
    expect(ok(backend.listRoutes(ns)).map((r) => r.dst)).toEqual(["10.1.0.0/24"])
    ok(backend.setLink(ns, "d1", { up: true }))
    expect(ok(backend.listRoutes(ns)).map((r) => r.dst)).toEqual(["10.1.0.0/24", "10.3.0.0/24"])
  })

  test("stay while another address covers the subnet, taking over src", () => {
    const { backend, ns } = setup()
    ok(backend.addAddress(ns, "d0", "10.1.0.3/24"))
    ok(backend.deleteAddress(ns, "d0", "10.1.0.2/24"))
    expect(ok(backend.listRoutes(ns))).toEqual([{ dst: "10.1.0.0/24", link: "d0", scope: "link", src: "10.1.0.3", protocol: "kernel" }])
    ok(backend.deleteAddress(ns, "d0", "10.1.0.3/24"))
    expect(ok(backend.listRoutes(ns))).toEqual([])
  })

  test("can be deleted like any route", () => {
    const { backend, ns } = setup()
    ok(backend.deleteRoute(ns, { dst: "10.1.0.0/24", link: "d0" }))
    expect(ok(backend.listRoutes(ns))).toEqual([])
    expect(reason(backend.addRoute(ns, { dst: "0.0.0.0/0", gateway: "10.1.0.1" }))).toBe("Invalid")
  })
})

describe("routes", () => {
  test("a gateway must be reachable (ENETUNREACH) through an up link", () => {
    const { backend, ns } = setup()
    expect(failure(backend.addRoute(ns, { dst: "0.0.0.0/0", gateway: "192.0.2.1" }))).toMatchObject({
      reason: "Invalid",
      errno: "ENETUNREACH"
    })
    ok(backend.createLink({ netns: ns, name: "d1", kind: "dummy" }))
    // reachable, but not through the named link
    expect(reason(backend.addRoute(ns, { dst: "0.0.0.0/0", gateway: "10.1.0.1", link: "d1" }))).toBe("Invalid")
    ok(backend.addRoute(ns, { dst: "0.0.0.0/0", gateway: "10.1.0.1", link: "d0" }))
    expect(ok(backend.listRoutes(ns))).toContainEqual({ dst: "0.0.0.0/0", gateway: "10.1.0.1", link: "d0", scope: "universe" })
  })

  test("a gateway is reachable through a dev route (ptp style), and on-link with scope link", () => {
    const { backend, ns } = setup()
    ok(backend.addRoute(ns, { dst: "10.9.0.1/32", link: "d0" }))
    ok(backend.addRoute(ns, { dst: "10.8.0.0/16", gateway: "10.9.0.1" }))
    ok(backend.addRoute(ns, { dst: "10.7.0.0/16", gateway: "192.0.2.1", link: "d0", scope: "link" }))
    ok(backend.createLink({ netns: ns, name: "d1", kind: "dummy" }))
    expect(failure(backend.addRoute(ns, { dst: "10.6.0.0/16", gateway: "192.0.2.1", link: "d1", scope: "link" }))).toMatchObject({
      reason: "Invalid",
      errno: "ENETDOWN"
    })
  })

  test("IPv4 dev routes need the device up; IPv6 ones do not; link-local IPv6 gateways need only the link", () => {
    const { backend, ns } = setup()
    ok(backend.createLink({ netns: ns, name: "d1", kind: "dummy" }))
    expect(reason(backend.addRoute(ns, { dst: "10.5.0.0/16", link: "d1" }))).toBe("Invalid")
    ok(backend.addRoute(ns, { dst: "fd01::/64", link: "d1" }))
    ok(backend.addRoute(ns, { dst: "::/0", gateway: "fe80::1", link: "d1" }))
    expect(reason(backend.addRoute(ns, { dst: "fd02::/64", gateway: "fd03::1" }))).toBe("Invalid")
    expect(ok(backend.listRoutes(ns))).toContainEqual({ dst: "::/0", gateway: "fe80::1", link: "d1", scope: "universe", priority: 1024 })
  })

  test("validation: CIDR, host bits (IPv4 only), families, neither gateway nor link, src must be local", () => {
    const { backend, ns } = setup()
    expect(reason(backend.addRoute(ns, { dst: "10.1.0.0/24" }))).toBe("Invalid")
    expect(reason(backend.addRoute(ns, { dst: "10.4.0.1/16", link: "d0" }))).toBe("Invalid")
    expect(reason(backend.addRoute(ns, { dst: "10.4.0.0/16", gateway: "fd00::1" }))).toBe("Invalid")
    expect(reason(backend.addRoute(ns, { dst: "10.4.0.0/16", gateway: "10.1.0.1", src: "10.1.0.9" }))).toBe("Invalid")
    expect(reason(backend.addRoute(ns, { dst: "10.4.0.0/16", link: "d0", priority: -1 }))).toBe("Invalid")
    expect(reason(backend.addRoute(ns, { dst: "10.4.0.0/16", link: "d0", table: 0 }))).toBe("Invalid")
    expect(reason(backend.addRoute(ns, { dst: "10.4.0.0/16", link: "nope" }))).toBe("NotFound")
    ok(backend.addRoute(ns, { dst: "10.4.0.0/16", gateway: "10.1.0.1", src: "10.1.0.2", mtu: 1400, advmss: 1360 }))
    ok(backend.addRoute(ns, { dst: "fd05::1/64", link: "d0" }))
    const routes = ok(backend.listRoutes(ns))
    expect(routes).toContainEqual({ dst: "10.4.0.0/16", gateway: "10.1.0.1", link: "d0", scope: "universe", mtu: 1400, advmss: 1360, src: "10.1.0.2" })
    expect(routes).toContainEqual({ dst: "fd05::/64", link: "d0", scope: "universe", priority: 1024 })
  })

  test("duplicates are same dst + table + priority; other metrics or tables coexist", () => {
    const { backend, ns } = setup()
    ok(backend.addRoute(ns, { dst: "0.0.0.0/0", gateway: "10.1.0.1" }))
    expect(failure(backend.addRoute(ns, { dst: "0.0.0.0/0", gateway: "10.1.0.254" }))).toMatchObject({
      reason: "AlreadyExists",
      errno: "EEXIST"
    })
    ok(backend.addRoute(ns, { dst: "0.0.0.0/0", gateway: "10.1.0.254", priority: 100 }))
    ok(backend.addRoute(ns, { dst: "0.0.0.0/0", gateway: "10.1.0.254", table: 100 }))
    expect(ok(backend.listRoutes(ns)).filter((r) => r.dst === "0.0.0.0/0")).toHaveLength(3)
  })

  test("deleteRoute matches the given fields only; missing is NotFound (ESRCH)", () => {
    const { backend, ns } = setup()
    ok(backend.addRoute(ns, { dst: "0.0.0.0/0", gateway: "10.1.0.1", priority: 100 }))
    expect(reason(backend.deleteRoute(ns, { dst: "0.0.0.0/0", gateway: "10.1.0.9" }))).toBe("NotFound")
    expect(reason(backend.deleteRoute(ns, { dst: "0.0.0.0/0", priority: 5 }))).toBe("NotFound")
    expect(reason(backend.deleteRoute(ns, { dst: "0.0.0.0/0", table: 7 }))).toBe("NotFound")
    ok(backend.deleteRoute(ns, { dst: "0.0.0.0/0" }))
    expect(failure(backend.deleteRoute(ns, { dst: "0.0.0.0/0" }))).toMatchObject({ reason: "NotFound", errno: "ESRCH" })
  })

  test("routes through a link go when it goes down or is deleted", () => {
    const { backend, ns, control } = setup()
    const before = control.snapshot()
    ok(backend.addRoute(ns, { dst: "0.0.0.0/0", gateway: "10.1.0.1" }))
    ok(backend.addRoute(ns, { dst: "10.4.0.0/16", link: "d0" }))
    ok(backend.setLink(ns, "d0", { up: false }))
    expect(ok(backend.listRoutes(ns))).toEqual([])
    ok(backend.setLink(ns, "d0", { up: true }))
    expect(control.diff(before, control.snapshot())).toEqual([])
    ok(backend.addRoute(ns, { dst: "0.0.0.0/0", gateway: "10.1.0.1" }))
    ok(backend.deleteLink(ns, "d0"))
    expect(ok(backend.listRoutes(ns))).toEqual([])
  })

  test("the host namespace is usable like any other", () => {
    const { backend } = fresh()
    ok(backend.addRoute(HOST_NETNS, { dst: "::2/128", link: "lo" }))
    expect(ok(backend.listRoutes(HOST_NETNS))).toContainEqual(expect.objectContaining({ dst: "::2/128", link: "lo" }))
  })
})
