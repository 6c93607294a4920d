import { describe, expect, test } from "bun:test"
import { Cause, Effect, Exit, Schema } from "effect"
import { eachOf, makeStep } from "../src/index.ts"

class Boom extends Schema.TaggedError<Boom>()("Boom", { message: Schema.String }) {}

const make = (failOn: string | undefined, ...failUndoOn: Array<string>) => {
  const items = new Set<string>()
  const log: Array<string> = []
  const step = makeStep<string, string, Boom>({
    name: "addItem",
    handle: Schema.String,
    apply: (name) =>
      name === failOn
        ? Effect.fail(new Boom({ message: `apply ${name}` }))
        : Effect.sync(() => (items.add(name), log.push(`apply ${name}`), name)),
    undo: (name) =>
      failUndoOn.includes(name)
        ? Effect.fail(new Boom({ message: `undo ${name}` }))
        : Effect.sync(() => void (items.delete(name), log.push(`undo ${name}`))),
    check: () => Effect.void
  })
  return { items, log, step: eachOf(step) }
}

describe("eachOf", () => {
  test("applies every element and returns their handles in order", async () => {
    const { items, step } = make(undefined)
    expect(await Effect.runPromise(step.apply(["a", "b", "c"]))).toEqual(["a", "b", "c"])
    expect(items).toEqual(new Set(["a", "b", "c"]))
  })

  test("a failing element undoes the earlier ones: all or nothing", async () => {
    const { items, log, step } = make("c")
    const exit = await Effect.runPromiseExit(step.apply(["a", "b", "c", "d"]))
    expect(Exit.isFailure(exit) && Cause.squash(exit.cause)).toMatchObject({ message: "apply c" })
    expect(items.size).toBe(0)
    expect(log).toEqual(["apply a", "apply b", "undo b", "undo a"])
  })

  test("an undo failing inside that rollback is attached, not raised instead", async () => {
    const { step } = make("c", "a")
    const exit = await Effect.runPromiseExit(step.apply(["a", "b", "c"]))
    if (!Exit.isFailure(exit)) throw new Error("expected failure")
    expect(exit.cause.reasons.find(Cause.isFailReason)?.error).toMatchObject({ message: "apply c" })
    expect(exit.cause.reasons.filter(Cause.isDieReason).map((r) => r.defect)).toEqual([
      expect.objectContaining({ _tag: "RollbackIncomplete" })
    ])
  })

  test("undo runs in reverse, tries every element, reports every failure", async () => {
    const { log, step } = make(undefined, "b", "c")
    await Effect.runPromise(step.apply(["a", "b", "c"]))
    const exit = await Effect.runPromiseExit(step.undo(["a", "b", "c"]))
    expect(log.slice(3)).toEqual(["undo a"])
    if (!Exit.isFailure(exit)) throw new Error("expected failure")
    const messages = exit.cause.reasons.filter(Cause.isFailReason).map((reason) => (reason.error as { message: string }).message)
    expect(messages).toEqual(["undo c", "undo b"])
  })

  test("the handle schema is the element schema's array", () => {
    const { step } = make(undefined)
    expect(Schema.decodeUnknownSync(step.handle)(["x", "y"])).toEqual(["x", "y"])
  })
})
