import { describe, expect, test } from "bun:test"
import { Effect, Schema } from "effect"
import { Backend } from "@tscni/backend"
import { createNetns, CreateNetnsHandle } from "../src/index.ts"
import { control, onKernel, stepContract } from "./harness.ts"

describe("createNetns", () => {
  stepContract({
    step: createNetns,
    prepare: Effect.succeed({ name: "pod1" }),
    expectDiff: (handle, diff) => {
      expect(handle).toEqual({ path: "/var/run/netns/pod1" })
      expect(diff[0]).toBe("+ netns /var/run/netns/pod1")
      expect(diff).toContain("/var/run/netns/pod1: + link lo (loopback, index 1)")
      for (const line of diff.slice(1)) expect(line.startsWith("/var/run/netns/pod1: + ")).toBe(true)
    },
    observe: (handle) =>
      Effect.gen(function*() {
        const backend = yield* Backend
        expect(yield* backend.netnsExists(handle.path)).toBe(true)
        expect((yield* backend.listLinks(handle.path)).map((link) => [link.name, link.up])).toEqual([["lo", false]])
      }),
    removeByHand: (handle) => Backend.use((backend) => backend.deleteNetns(handle.path)),
    breakByHand: (handle) => Backend.use((backend) => backend.deleteNetns(handle.path))
  })

  test("the handle round-trips through its schema", () => {
    const handle = onKernel(createNetns.apply({ name: "pod1" }))
    expect(Schema.decodeUnknownSync(CreateNetnsHandle)(Schema.encodeSync(CreateNetnsHandle)(handle))).toEqual(handle)
  })

  test("an existing name fails and changes nothing", () => {
    onKernel(Effect.gen(function*() {
      const mock = yield* control
      yield* createNetns.apply({ name: "pod1" })
      const before = mock.snapshot()
      const exit = yield* Effect.exit(createNetns.apply({ name: "pod1" }))
      expect(exit._tag).toBe("Failure")
      expect(mock.diff(before, mock.snapshot())).toEqual([])
    }))
  })
})
