import { describe, expect, test } from "bun:test"
import { Effect } from "effect"
import { Backend, HOST_NETNS } from "@tscni/backend"
import { attachToBridge, type AttachToBridgeInput } from "../src/index.ts"
import { control, failureOf, onKernel, stepContract } from "./harness.ts"

const prepare = Effect.gen(function*() {
  const backend = yield* Backend
  yield* backend.createLink({ netns: HOST_NETNS, name: "cni0", kind: "bridge" })
  yield* backend.createLink({ netns: HOST_NETNS, name: "cni1", kind: "bridge" })
  yield* backend.createLink({ netns: HOST_NETNS, name: "dummy0", kind: "dummy" })
  const input: AttachToBridgeInput = { netns: HOST_NETNS, link: "dummy0", bridge: "cni0", hairpin: true, isolated: true }
  return input
})

const bridgeIndex = (name: string) => Backend.use((backend) => backend.getLink(HOST_NETNS, name)).pipe(Effect.map((l) => l.index))

describe("attachToBridge", () => {
  stepContract({
    step: attachToBridge,
    prepare,
    expectDiff: (handle, diff) => {
      expect(handle).toEqual({ netns: HOST_NETNS, link: "dummy0", bridge: "cni0", hairpin: true, isolated: true })
      expect(diff).toEqual([
        `${HOST_NETNS}: ~ link dummy0 bridgePort: (none) → {"hairpin":true,"isolated":true}`,
        `${HOST_NETNS}: ~ link dummy0 master: (none) → 2`
      ])
    },
    observe: (handle) =>
      Effect.gen(function*() {
        const link = yield* Backend.use((backend) => backend.getLink(handle.netns, handle.link))
        expect(link.master).toBe(yield* bridgeIndex(handle.bridge))
        expect(link.bridgePort).toEqual({ hairpin: true, isolated: true })
      }),
    removeByHand: (handle) => Backend.use((backend) => backend.setLink(handle.netns, handle.link, { master: null })),
    breakByHand: (handle) => Backend.use((backend) => backend.setLink(handle.netns, handle.link, { hairpin: false }))
  })

  test("check fails when the link was released or moved to another bridge", () => {
    onKernel(Effect.gen(function*() {
      const backend = yield* Backend
      const handle = yield* attachToBridge.apply(yield* prepare)
      yield* backend.setLink(HOST_NETNS, "dummy0", { master: "cni1", hairpin: true, isolated: true })
      const moved = failureOf(yield* Effect.exit(attachToBridge.check(handle)))
      expect(moved?._tag === "CheckFailed" && moved.message).toBe("dummy0 is not a port of cni0")
      yield* backend.setLink(HOST_NETNS, "dummy0", { master: null })
      expect(failureOf(yield* Effect.exit(attachToBridge.check(handle)))?._tag).toBe("CheckFailed")
    }))
  })

  test("undo leaves a link that was moved to another bridge since, and tolerates a deleted link", () => {
    onKernel(Effect.gen(function*() {
      const mock = yield* control
      const backend = yield* Backend
      const handle = yield* attachToBridge.apply(yield* prepare)
      yield* backend.setLink(HOST_NETNS, "dummy0", { master: "cni1" })
      const before = mock.snapshot()
      yield* attachToBridge.undo(handle)
      expect(mock.diff(before, mock.snapshot())).toEqual([])
      yield* backend.deleteLink(HOST_NETNS, "dummy0")
      const gone = mock.snapshot()
      yield* attachToBridge.undo(handle)
      expect(mock.diff(gone, mock.snapshot())).toEqual([])
    }))
  })

  test("without flags, only the master changes and check ignores the flags", () => {
    onKernel(Effect.gen(function*() {
      const mock = yield* control
      const backend = yield* Backend
      yield* prepare
      const before = mock.snapshot()
      const handle = yield* attachToBridge.apply({ netns: HOST_NETNS, link: "dummy0", bridge: "cni0" })
      expect(handle).toEqual({ netns: HOST_NETNS, link: "dummy0", bridge: "cni0" })
      yield* backend.setLink(HOST_NETNS, "dummy0", { hairpin: true })
      yield* attachToBridge.check(handle)
      yield* attachToBridge.undo(handle)
      expect(mock.diff(before, mock.snapshot())).toEqual([])
    }))
  })
})
