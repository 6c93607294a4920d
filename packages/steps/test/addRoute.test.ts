import { describe, expect, test } from "bun:test"
import { Effect } from "effect"
import { Backend } from "@tscni/backend"
import { addRoute, type AddRouteInput, routeMatches } from "../src/index.ts"
import { onKernel, stepContract } from "./harness.ts"

const POD = "/var/run/netns/pod1"

const prepare = Effect.gen(function*() {
  const backend = yield* Backend
  const netns = yield* backend.createNetns("pod1")
  yield* backend.createLink({ netns, name: "eth0", kind: "dummy" })
  yield* backend.setLink(netns, "eth0", { up: true })
  yield* backend.addAddress(netns, "eth0", "10.88.0.2/24")
  const input: AddRouteInput = { netns, route: { dst: "0.0.0.0/0", gateway: "10.88.0.1" } }
  return input
})

describe("addRoute", () => {
  stepContract({
    step: addRoute,
    prepare,
    expectDiff: (handle, diff) => {
      expect(handle).toEqual({ netns: POD, route: { dst: "0.0.0.0/0", gateway: "10.88.0.1" } })
      expect(diff).toEqual([`${POD}: + route 0.0.0.0/0 via 10.88.0.1 dev eth0 scope universe`])
    },
    observe: (handle) =>
      Effect.gen(function*() {
        const routes = yield* Backend.use((backend) => backend.listRoutes(handle.netns))
        expect(routes.filter((route) => route.dst === "0.0.0.0/0")).toEqual([
          { dst: "0.0.0.0/0", gateway: "10.88.0.1", link: "eth0", scope: "universe" }
        ])
      }),
    removeByHand: (handle) => Backend.use((backend) => backend.deleteRoute(handle.netns, handle.route)),
    breakByHand: (handle) => Backend.use((backend) => backend.deleteRoute(handle.netns, handle.route))
  })

  test("an existing identical route is an error (not silently adopted) and changes nothing", () => {
    onKernel(Effect.gen(function*() {
      const input = yield* prepare
      yield* addRoute.apply(input)
      const exit = yield* Effect.exit(addRoute.apply(input))
      expect(exit._tag).toBe("Failure")
      yield* addRoute.check({ netns: input.netns, route: input.route })
    }))
  })

  test("routeMatches compares dst, gateway, link and table, not what the kernel fills in", () => {
    const kernel = { dst: "0.0.0.0/0", gateway: "10.88.0.1", link: "eth0", scope: "universe" as const, priority: 100 }
    expect(routeMatches({ dst: "0.0.0.0/0", gateway: "10.88.0.1" }, kernel)).toBe(true)
    expect(routeMatches({ dst: "0.0.0.0/0", link: "eth0" }, kernel)).toBe(true)
    expect(routeMatches({ dst: "0.0.0.0/0", gateway: "10.88.0.1", table: 254 }, kernel)).toBe(true)
    expect(routeMatches({ dst: "0.0.0.0/0", gateway: "10.88.0.254" }, kernel)).toBe(false)
    expect(routeMatches({ dst: "0.0.0.0/0", link: "eth1" }, kernel)).toBe(false)
    expect(routeMatches({ dst: "0.0.0.0/0", table: 100 }, kernel)).toBe(false)
    expect(routeMatches({ dst: "10.0.0.0/8" }, kernel)).toBe(false)
  })

  test("routeMatches compares addresses, not their spelling", () => {
    const kernel = { dst: "fd00:1::/64", gateway: "fd00::1", link: "eth0", scope: "universe" as const }
    expect(routeMatches({ dst: "FD00:1:0::/64", gateway: "fd00:0::1" }, kernel)).toBe(true)
    expect(routeMatches({ dst: "fd00:1::/64", gateway: "fd00::2" }, kernel)).toBe(false)
    expect(routeMatches({ dst: "fd00:1::/64", gateway: "fd00::1" }, { dst: "fd00:1::/64", link: "eth0" })).toBe(false)
  })
})
