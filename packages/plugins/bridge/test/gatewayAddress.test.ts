import { describe, expect, test } from "bun:test"
import { Effect } from "effect"
import { Backend, HOST_NETNS } from "@tscni/backend"
import * as MockBackend from "@tscni/backend-mock"
import { gatewayAddress } from "../src/steps/gatewayAddress.ts"

const onMock = <A, E>(effect: Effect.Effect<A, E, Backend | MockBackend.MockControlService>) =>
  Effect.runPromise(effect.pipe(Effect.provide(MockBackend.layer)))

describe("gatewayAddress", () => {
  test("a gateway spelled otherwise than the kernel lists it is the same gateway: adopted, not a conflict", () =>
    onMock(Effect.gen(function*() {
      const backend = yield* Backend
      const mock = yield* MockBackend.MockControlService
      yield* backend.createLink({ netns: HOST_NETNS, name: "br-gw", kind: "bridge" })
      const first = yield* gatewayAddress.apply({ netns: HOST_NETNS, bridge: "br-gw", cidr: "fd00::1/64", force: false, port: "veth-a" })
      const before = mock.snapshot()
      // a second pod whose IPAM writes the same gateway another way
      const second = yield* gatewayAddress.apply({ netns: HOST_NETNS, bridge: "br-gw", cidr: "FD00:0::1/64", force: false, port: "veth-b" })
      expect([first.created, second.created, second.replaced]).toEqual([true, false, []])
      expect(mock.diff(before, mock.snapshot())).toEqual([])
      yield* gatewayAddress.check(second)
      yield* gatewayAddress.undo({ ...first, cidr: "FD00:0::1/64" })
      expect((yield* backend.listAddresses(HOST_NETNS, "br-gw")).map((a) => a.cidr)).toEqual([])
    })))

  /** A bridge and pod ports on it, by name. */
  const bridgeWithPorts = (...ports: Array<string>) =>
    Effect.gen(function*() {
      const backend = yield* Backend
      yield* backend.createLink({ netns: HOST_NETNS, name: "br-gw", kind: "bridge" })
      for (const port of ports) yield* attach(port)
    })
  const attach = (port: string) =>
    Effect.gen(function*() {
      const backend = yield* Backend
      yield* backend.createLink({ netns: HOST_NETNS, name: port, kind: "dummy" })
      yield* backend.setLink(HOST_NETNS, port, { master: "br-gw" })
    })
  const gateways = Backend.use((backend) => backend.listAddresses(HOST_NETNS, "br-gw")).pipe(
    Effect.map((addresses) => addresses.map((a) => a.cidr))
  )

  test("a failed ADD removes the gateway it added while its own port is the bridge's only one", () =>
    onMock(Effect.gen(function*() {
      yield* bridgeWithPorts("veth-a")
      const handle = yield* gatewayAddress.apply({ netns: HOST_NETNS, bridge: "br-gw", cidr: "10.9.0.1/24", force: false, port: "veth-a" })
      expect(handle.created).toBe(true)
      yield* gatewayAddress.undo(handle)
      expect(yield* gateways).toEqual([])
    })))

  test("a failed ADD leaves the gateway it added once another pod is on the bridge (a concurrent ADD adopted it)", () =>
    onMock(Effect.gen(function*() {
      yield* bridgeWithPorts("veth-a")
      const handle = yield* gatewayAddress.apply({ netns: HOST_NETNS, bridge: "br-gw", cidr: "10.9.0.1/24", force: false, port: "veth-a" })
      // the other pod attaches and adopts the gateway
      yield* attach("veth-b")
      const adopted = yield* gatewayAddress.apply({ netns: HOST_NETNS, bridge: "br-gw", cidr: "10.9.0.1/24", force: false, port: "veth-b" })
      expect([handle.created, adopted.created]).toEqual([true, false])
      yield* gatewayAddress.undo(handle)
      expect(yield* gateways).toEqual(["10.9.0.1/24"])
      yield* gatewayAddress.check(adopted)
    })))

  test("a pod that attaches while the gateway is being removed gets it back", () =>
    onMock(Effect.gen(function*() {
      const backend = yield* Backend
      yield* bridgeWithPorts("veth-a")
      const handle = yield* gatewayAddress.apply({ netns: HOST_NETNS, bridge: "br-gw", cidr: "10.9.0.1/24", force: false, port: "veth-a" })
      // the other pod's port comes exactly between the first look and the removal's end
      const racing = { ...backend, deleteAddress: (...args: Parameters<typeof backend.deleteAddress>) => Effect.andThen(backend.deleteAddress(...args), attach("veth-b")) }
      yield* gatewayAddress.undo(handle).pipe(Effect.provideService(Backend, racing))
      expect(yield* gateways).toEqual(["10.9.0.1/24"])
    })))
})
