import { HOST_NETNS } from "@tscni/backend"
import { describe, expect, test } from "bun:test"
import { failure, fresh, ok, reason } from "./helpers.ts"

describe("fault injection", () => {
  test("failNth(1) fails the next call before it changes anything", () => {
    const { backend, control } = fresh()
    const ns = ok(backend.createNetns("a"))
    const before = control.snapshot()
    control.failNth(1)
    const error = failure(backend.createVeth({ netns: HOST_NETNS, name: "veth0", peerNetns: ns, peerName: "eth0" }))
    expect(error.reason).toBe("Injected")
    expect(error.operation).toBe("createVeth")
    expect(control.diff(before, control.snapshot())).toEqual([])
    expect(control.snapshot()).toEqual(before)
    // it fires once
    ok(backend.createVeth({ netns: HOST_NETNS, name: "veth0", peerNetns: ns, peerName: "eth0" }))
  })

  test("failNth counts every operation from now, reads included, with an optional reason", () => {
    const { backend, control } = fresh()
    control.failNth(3, "Busy")
    expect(reason(backend.listLinks(HOST_NETNS))).toBe("succeeded")
    expect(reason(backend.readSysctl(HOST_NETNS, "net.ipv4.ip_forward"))).toBe("succeeded")
    const before = control.snapshot()
    expect(reason(backend.writeSysctl(HOST_NETNS, "net.ipv4.ip_forward", "1"))).toBe("Busy")
    expect(control.snapshot()).toEqual(before)
    expect(reason(backend.writeSysctl(HOST_NETNS, "net.ipv4.ip_forward", "1"))).toBe("succeeded")
  })

  test("several failNth can be armed at once", () => {
    const { backend, control } = fresh()
    control.failNth(1)
    control.failNth(2, "PermissionDenied")
    expect(reason(backend.netnsExists(HOST_NETNS))).toBe("Injected")
    expect(reason(backend.netnsExists(HOST_NETNS))).toBe("PermissionDenied")
    expect(reason(backend.netnsExists(HOST_NETNS))).toBe("succeeded")
  })

  test("failNth rejects a non-positive count", () => {
    const { control } = fresh()
    expect(() => control.failNth(0)).toThrow(RangeError)
  })

  test("failWhen fails every matching call, leaves the state alone, and clearFaults disarms it", () => {
    const { backend, control } = fresh()
    control.failWhen((call) => call.operation === "createLink" && JSON.stringify(call.args[0]).includes('"name":"br0"'))
    const before = control.snapshot()
    expect(reason(backend.createLink({ netns: HOST_NETNS, name: "br0", kind: "bridge" }))).toBe("Injected")
    expect(reason(backend.createLink({ netns: HOST_NETNS, name: "br0", kind: "bridge" }))).toBe("Injected")
    expect(control.snapshot()).toEqual(before)
    expect(reason(backend.createLink({ netns: HOST_NETNS, name: "br1", kind: "bridge" }))).toBe("succeeded")
    control.clearFaults()
    expect(reason(backend.createLink({ netns: HOST_NETNS, name: "br0", kind: "bridge" }))).toBe("succeeded")
  })

  test("failWhen takes a reason", () => {
    const { backend, control } = fresh()
    control.failWhen((call) => call.operation === "addRoute", "Unknown")
    expect(reason(backend.addRoute(HOST_NETNS, { dst: "10.0.0.0/8", link: "lo" }))).toBe("Unknown")
  })

  test("clearFaults also disarms pending failNth", () => {
    const { backend, control } = fresh()
    control.failNth(1)
    control.clearFaults()
    expect(reason(backend.listLinks(HOST_NETNS))).toBe("succeeded")
  })

  test("calls() logs every call with copied arguments, failed ones included", () => {
    const { backend, control } = fresh()
    const request = { netns: HOST_NETNS, name: "d0", kind: "dummy" as const }
    ok(backend.createLink(request))
    expect(reason(backend.getLink(HOST_NETNS, "nope"))).toBe("NotFound")
    control.failNth(1)
    expect(reason(backend.listLinks(HOST_NETNS))).toBe("Injected")
    expect(control.calls()).toEqual([
      { operation: "createLink", args: [request] },
      { operation: "getLink", args: [HOST_NETNS, "nope"] },
      { operation: "listLinks", args: [HOST_NETNS] }
    ])
    expect(control.calls()[0]?.args[0]).not.toBe(request)
  })
})
