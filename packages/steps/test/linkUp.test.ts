import { describe, expect, test } from "bun:test"
import { Effect } from "effect"
import { Backend } from "@tscni/backend"
import { linkUp } from "../src/index.ts"
import { control, onKernel, stepContract } from "./harness.ts"

const POD = "/var/run/netns/pod1"

const prepare = Effect.gen(function*() {
  const backend = yield* Backend
  const netns = yield* backend.createNetns("pod1")
  yield* backend.createLink({ netns, name: "eth0", kind: "dummy" })
  return { netns, link: "eth0" }
})

describe("linkUp", () => {
  stepContract({
    step: linkUp,
    prepare,
    expectDiff: (handle, diff) => {
      expect(handle).toEqual({ netns: POD, link: "eth0", wasUp: false, addedAddresses: [] })
      expect(diff).toEqual([`${POD}: ~ link eth0 up: false → true`])
    },
    observe: (handle) =>
      Effect.gen(function*() {
        expect((yield* Backend.use((backend) => backend.getLink(handle.netns, handle.link))).up).toBe(true)
      }),
    removeByHand: (handle) => Backend.use((backend) => backend.deleteLink(handle.netns, handle.link)),
    breakByHand: (handle) => Backend.use((backend) => backend.setLink(handle.netns, handle.link, { up: false }))
  })

  test("a link that was already up stays up after undo (wasUp=true)", () => {
    onKernel(Effect.gen(function*() {
      const mock = yield* control
      const input = yield* prepare
      yield* Backend.use((backend) => backend.setLink(input.netns, input.link, { up: true }))
      const before = mock.snapshot()
      const handle = yield* linkUp.apply(input)
      expect(handle.wasUp).toBe(true)
      expect(mock.diff(before, mock.snapshot())).toEqual([])
      yield* linkUp.undo(handle)
      expect(mock.diff(before, mock.snapshot())).toEqual([])
    }))
  })

  test("loopback: the addresses the kernel adds on up are recorded, and undo restores the namespace exactly", () => {
    onKernel(Effect.gen(function*() {
      const mock = yield* control
      const netns = yield* Backend.use((backend) => backend.createNetns("pod1"))
      const before = mock.snapshot()
      const handle = yield* linkUp.apply({ netns, link: "lo" })
      expect(handle).toEqual({ netns, link: "lo", wasUp: false, addedAddresses: ["127.0.0.1/8", "::1/128"] })
      yield* linkUp.check(handle)
      yield* linkUp.undo(handle)
      expect(mock.diff(before, mock.snapshot())).toEqual([])
      yield* linkUp.undo(handle)
      expect(mock.diff(before, mock.snapshot())).toEqual([])
    }))
  })

  test("loopback: an injected failure at any call of apply leaves the namespace as it was", () => {
    for (let k = 1; k <= 4; k++) {
      const diff = onKernel(Effect.gen(function*() {
        const mock = yield* control
        const netns = yield* Backend.use((backend) => backend.createNetns("pod1"))
        const before = mock.snapshot()
        mock.failNth(k)
        const exit = yield* Effect.exit(linkUp.apply({ netns, link: "lo" }))
        mock.clearFaults()
        expect(exit._tag).toBe("Failure")
        return mock.diff(before, mock.snapshot())
      }))
      expect({ k, diff }).toEqual({ k, diff: [] })
    }
  })
})
