import { describe, expect, test } from "bun:test"
import { Effect } from "effect"
import { Backend } from "@tscni/backend"
import { removeAddress } from "../src/index.ts"
import { control, onKernel, stepContract } from "./harness.ts"

const prepare = Effect.gen(function*() {
  const backend = yield* Backend
  const netns = yield* backend.createNetns("pod1")
  yield* backend.createLink({ netns, name: "br0", kind: "bridge" })
  yield* backend.addAddress(netns, "br0", "10.1.0.1/24")
  return { netns, link: "br0", cidr: "10.1.0.1/24" }
})

describe("removeAddress", () => {
  stepContract({
    step: removeAddress,
    prepare,
    expectDiff: (handle, diff) => {
      expect(handle.removed).toBe(true)
      expect(diff).toHaveLength(1)
    },
    observe: (handle) =>
      Effect.gen(function*() {
        const present = yield* Backend.use((backend) => backend.listAddresses(handle.netns, "br0"))
        expect(present.map((a) => a.cidr)).not.toContain("10.1.0.1/24")
      }),
    removeByHand: (handle) => Backend.use((backend) => backend.deleteLink(handle.netns, "br0")),
    breakByHand: (handle) => Backend.use((backend) => backend.addAddress(handle.netns, "br0", "10.1.0.1/24"))
  })

  test("an address that is not there is recorded as not removed and not put back", () => {
    onKernel(Effect.gen(function*() {
      const mock = yield* control
      const input = yield* prepare
      const before = mock.snapshot()
      const handle = yield* removeAddress.apply({ ...input, cidr: "10.9.9.9/24" })
      expect(handle.removed).toBe(false)
      yield* removeAddress.undo(handle)
      expect(mock.diff(before, mock.snapshot())).toEqual([])
    }))
  })
})
