import { Backend, HOST_NETNS } from "@tscni/backend"
import { describe, expect, test } from "bun:test"
import { Effect } from "effect"
import { layer, MockControlService } from "../src/index.ts"

const program = Effect.gen(function* () {
  const backend = yield* Backend
  const control = yield* MockControlService
  const before = control.snapshot()
  yield* backend.createLink({ netns: HOST_NETNS, name: "d0", kind: "dummy" })
  return { diff: control.diff(before, control.snapshot()), calls: control.calls().map((c) => c.operation) }
})

describe("layer", () => {
  test("provides Backend and MockControlService over the same kernel", async () => {
    const result = await Effect.runPromise(Effect.provide(program, layer))
    expect(result.diff.some((line) => line.includes("+ link d0"))).toBe(true)
    expect(result.calls).toEqual(["createLink"])
  })

  test("every build is a fresh kernel", async () => {
    await Effect.runPromise(Effect.provide(program, layer))
    const again = await Effect.runPromise(Effect.provide(program, layer))
    expect(again.calls).toEqual(["createLink"])
  })
})
