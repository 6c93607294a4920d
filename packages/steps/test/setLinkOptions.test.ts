import { describe, expect, test } from "bun:test"
import { Effect } from "effect"
import { Backend } from "@tscni/backend"
import { setLinkOptions } from "../src/index.ts"
import { control, onKernel, stepContract } from "./harness.ts"

const prepare = Effect.gen(function*() {
  const backend = yield* Backend
  const netns = yield* backend.createNetns("pod1")
  yield* backend.createVeth({ netns, name: "eth0", peerNetns: netns, peerName: "eth0p" })
  return { netns, link: "eth0", options: { mtu: 1400, promisc: true, txqlen: 500, mac: "0a:58:0a:00:00:07" } }
})

describe("setLinkOptions", () => {
  stepContract({
    step: setLinkOptions,
    prepare,
    expectDiff: (handle, diff) => {
      expect(handle.previous).toMatchObject({ mtu: 1500, promisc: false, txqlen: 1000 })
      expect(diff.length).toBeGreaterThan(0)
    },
    observe: (handle) =>
      Effect.gen(function*() {
        const link = yield* Backend.use((backend) => backend.getLink(handle.netns, "eth0"))
        expect(link).toMatchObject({ mtu: 1400, promisc: true, txqlen: 500, mac: "0a:58:0a:00:00:07" })
      }),
    removeByHand: (handle) => Backend.use((backend) => backend.deleteLink(handle.netns, "eth0")),
    breakByHand: (handle) => Backend.use((backend) => backend.setLink(handle.netns, "eth0", { mtu: 1450 }))
  })

  test("restoreOnUndo=false (a shared bridge's promiscuous mode): undo leaves the switch on, and makes no call", () => {
    onKernel(Effect.gen(function*() {
      const mock = yield* control
      const backend = yield* Backend
      yield* backend.createLink({ netns: "host", name: "br0", kind: "bridge" })
      const before = mock.snapshot()
      const handle = yield* setLinkOptions.apply({ netns: "host", link: "br0", options: { promisc: true }, restoreOnUndo: false })
      expect(handle.previous).toEqual({})
      const calls = mock.calls().length
      yield* setLinkOptions.undo(handle)
      expect(mock.calls().length).toBe(calls)
      expect(mock.diff(before, mock.snapshot())).toEqual(["host: ~ link br0 promisc: false → true"])
    }))
  })
})
