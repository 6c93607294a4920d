import { describe, expect, test } from "bun:test"
import { Cause, Deferred, Effect, Exit, Fiber, Schema } from "effect"
import { CheckFailed, makeStep, Pipeline, type Step } from "../src/index.ts"

/** A toy "kernel": a set of names. Steps add a name and undo removes it. */
class World {
  readonly items = new Set<string>()
  readonly log: Array<string> = []
}

class Boom extends Schema.TaggedError<Boom>()("Boom", { message: Schema.String }) {}

const Handle = Schema.Struct({ name: Schema.String })

const addItem = (world: World, options: { failApply?: string; failUndo?: string; block?: Deferred.Deferred<void> } = {}) =>
  makeStep<{ name: string }, { name: string }, Boom>({
    name: "addItem",
    handle: Handle,
    apply: (input) =>
      Effect.gen(function*() {
        if (options.block && input.name === "slow") yield* Deferred.await(options.block)
        if (input.name === options.failApply) return yield* new Boom({ message: `apply ${input.name} failed` })
        world.items.add(input.name)
        world.log.push(`apply ${input.name}`)
        return { name: input.name }
      }),
    undo: (handle) =>
      Effect.gen(function*() {
        world.log.push(`undo ${handle.name}`)
        if (handle.name === options.failUndo) return yield* new Boom({ message: `undo ${handle.name} failed` })
        world.items.delete(handle.name)
      }),
    check: (handle) =>
      world.items.has(handle.name)
        ? Effect.void
        : Effect.fail(new CheckFailed({ step: "addItem", message: `${handle.name} is missing` }))
  })

const threeSteps = (step: Step<{ name: string }, { name: string }, Boom>, last = "c") =>
  Pipeline.make<{ prefix: string }>("test")
    .step("a", step, (input) => ({ name: `${input.prefix}a` }))
    .step("b", step, (_input, handles) => ({ name: `${handles.a.name}-b` }))
    .step("c", step, () => ({ name: last }))

describe("Pipeline.apply", () => {
  test("applies in order; later steps see earlier handles", async () => {
    const world = new World()
    const handles = await Effect.runPromise(Pipeline.apply(threeSteps(addItem(world)), { prefix: "x" }))
    expect(handles).toEqual({ a: { name: "xa" }, b: { name: "xa-b" }, c: { name: "c" } })
    expect(world.log).toEqual(["apply xa", "apply xa-b", "apply c"])
  })

  test("a failure undoes the applied steps in reverse order and returns the original error", async () => {
    const world = new World()
    const exit = await Effect.runPromiseExit(Pipeline.apply(threeSteps(addItem(world, { failApply: "c" })), { prefix: "" }))
    expect(world.items.size).toBe(0)
    expect(world.log).toEqual(["apply a", "apply a-b", "undo a-b", "undo a"])
    expect(Exit.isFailure(exit) && Cause.squash(exit.cause)).toMatchObject({ _tag: "Boom", message: "apply c failed" })
  })

  test("undo failures during rollback are attached, never masking the original error", async () => {
    const world = new World()
    const exit = await Effect.runPromiseExit(
      Pipeline.apply(threeSteps(addItem(world, { failApply: "c", failUndo: "a-b" })), { prefix: "" })
    )
    expect(world.log).toEqual(["apply a", "apply a-b", "undo a-b", "undo a"]) // "a" still undone
    if (!Exit.isFailure(exit)) throw new Error("expected a failure")
    const failure = exit.cause.reasons.find(Cause.isFailReason)
    expect(failure?.error).toMatchObject({ _tag: "Boom", message: "apply c failed" })
    const attached = exit.cause.reasons.filter(Cause.isDieReason).map((reason) => reason.defect)
    expect(attached).toEqual([expect.objectContaining({ _tag: "RollbackIncomplete", failures: [{ step: "b", message: "undo a-b failed" }] })])
  })

  // A step's apply is never cut in half (its effect would have no handle to undo): an
  // interrupt lets the running step finish, then rolls everything back.
  test("interruption during a step lets it finish, then rolls back everything", async () => {
    const world = new World()
    const program = Effect.gen(function*() {
      const block = yield* Deferred.make<void>()
      const fiber = yield* Effect.forkChild(Pipeline.apply(threeSteps(addItem(world, { block }), "slow"), { prefix: "" }))
      while (world.log.length < 2) yield* Effect.yieldNow // the third step is now blocked
      const interrupting = yield* Effect.forkChild(Fiber.interrupt(fiber))
      yield* Effect.yieldNow
      yield* Deferred.succeed(block, undefined)
      yield* Fiber.join(interrupting)
      return yield* Fiber.await(fiber)
    })
    const exit = await Effect.runPromise(program)
    expect(Exit.isFailure(exit) && Cause.hasInterruptsOnly(exit.cause)).toBe(true)
    expect(world.items.size).toBe(0)
    expect(world.log).toEqual(["apply a", "apply a-b", "apply slow", "undo slow", "undo a-b", "undo a"])
  })

  test("optionalStep can be skipped and then has no handle", async () => {
    const world = new World()
    const pipeline = Pipeline.make<{ withExtra: boolean }>("optional")
      .step("base", addItem(world), () => ({ name: "base" }))
      .optionalStep("extra", addItem(world), (input) => (input.withExtra ? { name: "extra" } : Pipeline.skip))
    expect(await Effect.runPromise(Pipeline.apply(pipeline, { withExtra: false }))).toEqual({ base: { name: "base" } })
    expect(world.items).toEqual(new Set(["base"]))
    const both = await Effect.runPromise(Pipeline.apply(pipeline, { withExtra: true }))
    expect(both.extra).toEqual({ name: "extra" })
    expect(pipeline.plan).toEqual([{ key: "base", step: "addItem" }, { key: "extra", step: "addItem" }])
  })
})

describe("Pipeline.undo (DEL)", () => {
  test("undoes present handles in reverse and skips absent ones", async () => {
    const world = new World()
    world.items.add("a").add("c")
    await Effect.runPromise(Pipeline.undo(threeSteps(addItem(world)), { a: { name: "a" }, c: { name: "c" } }))
    expect(world.log).toEqual(["undo c", "undo a"])
    expect(world.items.size).toBe(0)
  })

  test("keeps going after a failed undo and reports every failure", async () => {
    const world = new World()
    const exit = await Effect.runPromiseExit(
      Pipeline.undo(threeSteps(addItem(world, { failUndo: "b" })), { a: { name: "a" }, b: { name: "b" }, c: { name: "c" } })
    )
    expect(world.log).toEqual(["undo c", "undo b", "undo a"])
    expect(Exit.isFailure(exit) && Cause.squash(exit.cause)).toMatchObject({
      _tag: "UndoIncomplete",
      failures: [{ step: "b", message: "undo b failed" }]
    })
  })
})

describe("Pipeline.check (CHECK)", () => {
  test("passes when every postcondition holds and stops at the first that does not", async () => {
    const world = new World()
    const pipeline = threeSteps(addItem(world))
    const handles = await Effect.runPromise(Pipeline.apply(pipeline, { prefix: "" }))
    await Effect.runPromise(Pipeline.check(pipeline, handles))
    world.items.delete("a-b")
    world.items.delete("c")
    const exit = await Effect.runPromiseExit(Pipeline.check(pipeline, handles))
    expect(Exit.isFailure(exit) && Cause.squash(exit.cause)).toMatchObject({ _tag: "CheckFailed", message: "a-b is missing" })
  })
})

describe("locate: one definition drives ADD, DEL and CHECK", () => {
  /** What DEL and CHECK know in the toy: the prefix ADD used, and whether "b" is shared. */
  interface Known {
    readonly prefix: string
  }
  const located = (world: World) =>
    Pipeline.make<{ prefix: string }, Known>("located")
      .step("a", addItem(world), (input) => ({ name: `${input.prefix}a` }), (known) => ({ name: `${known.prefix}a` }))
      // shared with others: DEL leaves it, CHECK verifies it
      .step("b", addItem(world), (input) => ({ name: `${input.prefix}b` }), Pipeline.checkOnly((known) => ({ name: `${known.prefix}b` })))
      .optionalStep("c", addItem(world), () => Pipeline.skip, Pipeline.unlocated)

  test("locate gives each step's handle for the purpose; skip leaves it out", () => {
    const pipeline = located(new World())
    expect(Pipeline.locate(pipeline, { prefix: "x" }, "del")).toEqual({ a: { name: "xa" } })
    expect(Pipeline.locate(pipeline, { prefix: "x" }, "check")).toEqual({ a: { name: "xa" }, b: { name: "xb" } })
  })

  test("runDel undoes what ADD made of the attachment's own, without ADD's handles; runCheck verifies all of it", async () => {
    const world = new World()
    const pipeline = located(world)
    await Effect.runPromise(Pipeline.apply(pipeline, { prefix: "x" }))
    await Effect.runPromise(Pipeline.runCheck(pipeline, { prefix: "x" }))
    // another attachment's CHECK finds nothing of its own
    const other = await Effect.runPromiseExit(Pipeline.runCheck(pipeline, { prefix: "y" }))
    expect(Exit.isFailure(other) && Cause.squash(other.cause)).toMatchObject({ _tag: "CheckFailed", message: "ya is missing" })
    await Effect.runPromise(Pipeline.runDel(pipeline, { prefix: "x" }))
    expect([...world.items]).toEqual(["xb"])
    expect(world.log.slice(-1)).toEqual(["undo xa"])
  })

  test("a pipeline without Known takes no locate and locates nothing", () => {
    const pipeline = threeSteps(addItem(new World()))
    expect(Pipeline.locate(pipeline, undefined as never, "del")).toEqual({})
  })
})

describe("handles round trip", () => {
  test("encodeHandles / decodeHandles; undecodable entries are named, not dropped in silence", () => {
    const pipeline = threeSteps(addItem(new World()))
    const encoded = Pipeline.encodeHandles(pipeline, { a: { name: "a" }, c: { name: "c" } })
    expect(JSON.parse(JSON.stringify(encoded))).toEqual({ a: { name: "a" }, c: { name: "c" } })
    expect(Pipeline.decodeHandles(pipeline, encoded)).toEqual({ handles: { a: { name: "a" }, c: { name: "c" } }, undecodable: [] })
    const broken = Pipeline.decodeHandles(pipeline, { ...encoded, b: { nope: 1 } })
    expect(broken.handles).toEqual({ a: { name: "a" }, c: { name: "c" } })
    expect(broken.undecodable).toEqual([{ step: "b", message: expect.stringContaining("name") }])
  })
})

describe("tracing", () => {
  test("every step phase logs name, phase, outcome and duration at debug level", async () => {
    const world = new World()
    const lines: Array<string> = []
    const { Logger, References, Layer } = await import("effect")
    const capture = Logger.make((options) => void lines.push(String(options.message)))
    await Effect.runPromiseExit(
      Pipeline.apply(threeSteps(addItem(world, { failApply: "c" })), { prefix: "" }).pipe(
        Effect.provide(Layer.mergeAll(Logger.layer([capture]), Layer.succeed(References.MinimumLogLevel)("Debug")))
      )
    )
    expect(lines.map((line) => line.replace(/\d+ms/, "Nms"))).toEqual([
      "step addItem apply ok in Nms",
      "step addItem apply ok in Nms",
      "step addItem apply failed in Nms",
      "step addItem undo ok in Nms",
      "step addItem undo ok in Nms"
    ])
  })
})
