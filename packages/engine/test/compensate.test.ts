import { describe, expect, test } from "bun:test"
import { Cause, Effect, Exit, Option } from "effect"
import { compensated, Pipeline } from "../src/index.ts"

const run = <A, E>(effect: Effect.Effect<A, E>) => Effect.runSyncExit(effect)

describe("compensated", () => {
  test("success: the value, and the cleanup never runs", () => {
    let cleaned = 0
    const exit = run(compensated("s", Effect.succeed(1), Effect.sync(() => cleaned++)))
    expect([Exit.isSuccess(exit) && exit.value, cleaned]).toEqual([1, 0])
  })

  test("failure: the cleanup runs, and the step's own typed failure is the error", () => {
    let cleaned = 0
    const exit = run(compensated("s", Effect.fail("made, not finished"), Effect.sync(() => cleaned++)))
    expect(cleaned).toBe(1)
    expect(Exit.isFailure(exit) && exit.cause.reasons.map((r) => r._tag)).toEqual(["Fail"])
  })

  test("a cleanup that fails too is not swallowed: it is attached as RollbackIncomplete, the typed failure stays", () => {
    const exit = run(compensated("vethPair", Effect.fail("alias refused"), Effect.fail(new Error("cannot delete veth0"))))
    if (!Exit.isFailure(exit)) throw new Error("expected a failure")
    expect(Option.getOrUndefined(Cause.findErrorOption(exit.cause))).toBe("alias refused")
    const attached = exit.cause.reasons.flatMap((reason) => (Cause.isDieReason(reason) ? [reason.defect] : []))
    expect(attached).toEqual([new Pipeline.RollbackIncomplete({ failures: [{ step: "vethPair", message: "cannot delete veth0" }] })])
  })
})
