import { describe, expect, test } from "bun:test"
import { Effect } from "effect"
import { Backend, HOST_NETNS } from "@tscni/backend"
import { addAddress } from "../src/index.ts"
import { control, onKernel, stepContract } from "./harness.ts"

const prepare = Effect.gen(function*() {
  const backend = yield* Backend
  yield* backend.createLink({ netns: HOST_NETNS, name: "cni0", kind: "bridge" })
  yield* backend.setLink(HOST_NETNS, "cni0", { up: true })
  return { netns: HOST_NETNS, link: "cni0", cidr: "10.88.0.1/24" }
})

describe("addAddress", () => {
  stepContract({
    step: addAddress,
    prepare,
    expectDiff: (handle, diff) => {
      expect(handle).toEqual({ netns: HOST_NETNS, link: "cni0", cidr: "10.88.0.1/24", created: true })
      expect(diff).toEqual([
        `${HOST_NETNS}: + address cni0 10.88.0.1/24`,
        `${HOST_NETNS}: + route 10.88.0.0/24 dev cni0 scope link src 10.88.0.1`
      ])
    },
    observe: (handle) =>
      Effect.gen(function*() {
        const addresses = yield* Backend.use((backend) => backend.listAddresses(handle.netns, handle.link))
        expect(addresses.map((address) => address.cidr)).toEqual([handle.cidr])
      }),
    removeByHand: (handle) => Backend.use((backend) => backend.deleteAddress(handle.netns, handle.link, handle.cidr)),
    breakByHand: (handle) => Backend.use((backend) => backend.deleteAddress(handle.netns, handle.link, handle.cidr))
  })

  test("an address already present (a shared gateway) is adopted and never removed by undo", () => {
    onKernel(Effect.gen(function*() {
      const mock = yield* control
      const input = yield* prepare
      const first = yield* addAddress.apply(input)
      const before = mock.snapshot()
      const second = yield* addAddress.apply(input)
      expect(second).toEqual({ ...first, created: false })
      expect(mock.diff(before, mock.snapshot())).toEqual([])
      yield* addAddress.check(second)
      yield* addAddress.undo(second)
      expect(mock.diff(before, mock.snapshot())).toEqual([])
      yield* addAddress.check(first)
    }))
  })

  test("an address spelled otherwise than the kernel lists it is still found: adopted, checked, undone", () => {
    onKernel(Effect.gen(function*() {
      const mock = yield* control
      const backend = yield* Backend
      yield* prepare
      const empty = mock.snapshot()
      const handle = yield* addAddress.apply({ netns: HOST_NETNS, link: "cni0", cidr: "FD00:0::1/64" })
      expect((yield* backend.listAddresses(HOST_NETNS, "cni0")).map((a) => a.cidr)).toEqual(["fd00::1/64"])
      const again = yield* addAddress.apply({ netns: HOST_NETNS, link: "cni0", cidr: "fd00::1/64" })
      expect(again.created).toBe(false)
      yield* addAddress.check(handle)
      yield* addAddress.undo(handle)
      expect(mock.diff(empty, mock.snapshot())).toEqual([])
    }))
  })

  test("noDad asks the kernel to skip duplicate address detection (IFA_F_NODAD); without it, nothing is asked", () => {
    onKernel(Effect.gen(function*() {
      const mock = yield* control
      yield* prepare
      yield* addAddress.apply({ netns: HOST_NETNS, link: "cni0", cidr: "fd00::1/64", noDad: true })
      yield* addAddress.apply({ netns: HOST_NETNS, link: "cni0", cidr: "fd00::2/64" })
      expect(mock.calls().filter((call) => call.operation === "addAddress").map((call) => call.args)).toEqual([
        [HOST_NETNS, "cni0", "fd00::1/64", { noDad: true }],
        [HOST_NETNS, "cni0", "fd00::2/64", undefined]
      ])
    }))
  })

  test("undo tolerates the link being gone", () => {
    onKernel(Effect.gen(function*() {
      const mock = yield* control
      const handle = yield* addAddress.apply(yield* prepare)
      yield* Backend.use((backend) => backend.deleteLink(HOST_NETNS, "cni0"))
      const gone = mock.snapshot()
      yield* addAddress.undo(handle)
      expect(mock.diff(gone, mock.snapshot())).toEqual([])
    }))
  })
})
