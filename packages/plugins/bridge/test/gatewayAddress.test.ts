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
      const first = yield* gatewayAddress.apply({ netns: HOST_NETNS, bridge: "br-gw", cidr: "fd00::1/64", force: false })
      const before = mock.snapshot()
      // a second pod whose IPAM writes the same gateway another way
      const second = yield* gatewayAddress.apply({ netns: HOST_NETNS, bridge: "br-gw", cidr: "FD00:0::1/64", force: false })
      expect([first.created, second.created, second.replaced]).toEqual([true, false, []])
      expect(mock.diff(before, mock.snapshot())).toEqual([])
      yield* gatewayAddress.check(second)
      yield* gatewayAddress.undo({ ...first, cidr: "FD00:0::1/64" })
      expect((yield* backend.listAddresses(HOST_NETNS, "br-gw")).map((a) => a.cidr)).toEqual([])
    })))
})
