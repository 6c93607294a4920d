import { describe, expect, test } from "bun:test"
import { Cause, Effect, Exit } from "effect"
import { Backend } from "@tscni/backend"
import * as MockBackend from "@tscni/backend-mock"
import { dropConnectedRoute } from "../src/steps/dropConnectedRoute.ts"

const onMock = <A, E>(effect: Effect.Effect<A, E, Backend | MockBackend.MockControlService>) =>
  Effect.runPromise(effect.pipe(Effect.provide(MockBackend.layer)))

/** A namespace with an up veth end carrying 10.77.0.5/24 and fd00:77::5/64 (and the kernel's routes to both networks). */
const podWithAddresses = Effect.gen(function*() {
  const backend = yield* Backend
  const ns = yield* backend.createNetns("p1")
  yield* backend.createVeth({ netns: ns, name: "eth0", peerNetns: ns, peerName: "peer0" })
  yield* backend.setLink(ns, "eth0", { up: true })
  yield* backend.addAddress(ns, "eth0", "10.77.0.5/24")
  yield* backend.addAddress(ns, "eth0", "fd00:77::5/64", { noDad: true })
  return ns
})

const V4 = { dst: "10.77.0.0/24", link: "eth0", scope: "link", src: "10.77.0.5" } as const
const V6 = { dst: "fd00:77::/64", link: "eth0", priority: 256 } as const

describe("dropConnectedRoute", () => {
  for (const [family, route, line] of [
    ["IPv4", V4, "route 10.77.0.0/24 dev eth0 scope link src 10.77.0.5"],
    ["IPv6", V6, "route fd00:77::/64 dev eth0 scope universe metric 256"]
  ] as const) {
    test(`${family}: apply removes exactly the kernel's route; check then passes, and fails once it is back; undo puts it back (as a route of ours), twice is fine`, () =>
      onMock(Effect.gen(function*() {
        const backend = yield* Backend
        const mock = yield* MockBackend.MockControlService
        const ns = yield* podWithAddresses
        const before = mock.snapshot()
        const handle = yield* dropConnectedRoute.apply({ netns: ns, route })
        expect(handle.dropped).toBe(true)
        expect(mock.diff(before, mock.snapshot())).toEqual([`${ns}: - ${line}`])
        yield* dropConnectedRoute.check(handle)
        // a route to the network via a gateway is not the one that went
        const gateway = family === "IPv4" ? "10.77.0.1" : "fd00:77::1"
        yield* backend.addRoute(ns, { dst: `${gateway}/${family === "IPv4" ? 32 : 128}`, link: "eth0", scope: "link" })
        yield* backend.addRoute(ns, { dst: route.dst, gateway, link: "eth0" })
        yield* dropConnectedRoute.check(handle)
        yield* backend.addRoute(ns, route, { append: true })
        const back = yield* Effect.exit(dropConnectedRoute.check(handle))
        expect(Exit.isFailure(back) && String(Cause.squash(back.cause))).toContain(`${route.dst} is routed straight onto eth0`)
        yield* backend.deleteRoute(ns, route)

        const undone = mock.snapshot()
        yield* dropConnectedRoute.undo(handle)
        expect(mock.diff(undone, mock.snapshot())).toEqual([`${ns}: + ${line}`])
        yield* dropConnectedRoute.undo(handle)
        expect(mock.diff(undone, mock.snapshot())).toEqual([`${ns}: + ${line}`])
      })))
  }

  test("nothing to drop (an IPv4 /32 has no route of the kernel's): nothing changes, undo does nothing", () =>
    onMock(Effect.gen(function*() {
      const mock = yield* MockBackend.MockControlService
      const ns = yield* podWithAddresses
      const before = mock.snapshot()
      const handle = yield* dropConnectedRoute.apply({ netns: ns, route: { dst: "10.99.0.0/24", link: "eth0", scope: "link" } })
      expect(handle.dropped).toBe(false)
      yield* dropConnectedRoute.undo(handle)
      expect(mock.diff(before, mock.snapshot())).toEqual([])
    })))

  test("undo after the link went (the veth's undo) changes nothing; a fault at its one call leaves the route", () =>
    onMock(Effect.gen(function*() {
      const backend = yield* Backend
      const mock = yield* MockBackend.MockControlService
      const ns = yield* podWithAddresses
      const before = mock.snapshot()
      mock.failNth(1)
      expect(Exit.isFailure(yield* Effect.exit(dropConnectedRoute.apply({ netns: ns, route: V4 })))).toBe(true)
      expect(mock.diff(before, mock.snapshot())).toEqual([])
      const handle = yield* dropConnectedRoute.apply({ netns: ns, route: V4 })
      yield* backend.deleteLink(ns, "eth0")
      const gone = mock.snapshot()
      yield* dropConnectedRoute.undo(handle)
      expect(mock.diff(gone, mock.snapshot())).toEqual([])
    })))
})
