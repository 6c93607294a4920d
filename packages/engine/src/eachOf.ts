import { Cause, Effect, Exit, Schema } from "effect"
import { RollbackIncomplete } from "./Pipeline.ts"
import type { CheckFailed, Step } from "./Step.ts"

/**
 * Lifts a step over a list (a pod's addresses, its routes): applies the inputs in order and,
 * if one fails, undoes the ones already applied before failing, so the lifted step is as
 * all-or-nothing as the step itself. Undo goes in reverse and tries every element.
 */
export const eachOf = <I, H, E, R>(step: Step<I, H, E, R>): Step<ReadonlyArray<I>, ReadonlyArray<H>, E, R> => {
  const undoAll = (handles: ReadonlyArray<H>) =>
    Effect.gen(function*() {
      const failures: Array<Cause.Cause<E>> = []
      for (const handle of [...handles].reverse()) {
        const exit = yield* Effect.exit(step.undo(handle))
        if (Exit.isFailure(exit)) failures.push(exit.cause)
      }
      return failures
    })
  return {
    name: step.name,
    handle: Schema.Array(step.handle),
    apply: (inputs) =>
      Effect.uninterruptibleMask((restore) =>
        Effect.gen(function*() {
          const applied: Array<H> = []
          for (const input of inputs) {
            const exit = yield* Effect.exit(restore(step.apply(input)))
            if (Exit.isSuccess(exit)) {
              applied.push(exit.value)
              continue
            }
            const failures = yield* undoAll(applied)
            if (failures.length === 0) return yield* Effect.failCause(exit.cause)
            const rollback = new RollbackIncomplete({
              failures: failures.map((cause) => ({ step: step.name, message: String(Cause.squash(cause)) }))
            })
            return yield* Effect.failCause(Cause.combine(exit.cause, Cause.die(rollback)))
          }
          return applied as ReadonlyArray<H>
        })
      ),
    undo: (handles) =>
      Effect.gen(function*() {
        // every element was tried; every failure is reported, as Pipeline.undo does
        const failures = yield* undoAll(handles)
        const [first, ...rest] = failures
        if (first !== undefined) {
          return yield* Effect.failCause(rest.reduce((all: Cause.Cause<E>, cause: Cause.Cause<E>) => Cause.combine(all, cause), first))
        }
      }),
    check: (handles): Effect.Effect<void, E | CheckFailed, R> => Effect.forEach(handles, step.check, { discard: true })
  }
}
