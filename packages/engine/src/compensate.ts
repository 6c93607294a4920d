import { Cause, Effect } from "effect"
import { RollbackIncomplete } from "./Pipeline.ts"

const describe = (cause: Cause.Cause<unknown>): string => {
  const error = Cause.squash(cause)
  return error instanceof Error ? error.message : String(error)
}

/**
 * A step's apply that makes something and then finishes it (creates a link, then names
 * it): when finishing fails, `undo` removes what was made, so the step leaves nothing. When
 * that cleanup fails too, the step's own failure stays the error and the cleanup's is
 * attached as RollbackIncomplete (as the pipeline attaches its undo failures), so the
 * caller's error says what was left behind instead of nothing.
 */
export const compensated = <A, E, R, E2, R2>(
  step: string,
  effect: Effect.Effect<A, E, R>,
  undo: Effect.Effect<unknown, E2, R2>
): Effect.Effect<A, E, R | R2> =>
  // not onError: a failing cleanup there turns the step's typed failure into a defect
  effect.pipe(
    Effect.catchCause((cause) =>
      undo.pipe(
        Effect.matchCauseEffect({
          onSuccess: () => Effect.failCause(cause),
          onFailure: (left) => Effect.failCause(Cause.combine(cause, Cause.die(new RollbackIncomplete({ failures: [{ step, message: describe(left) }] }))))
        })
      )
    )
  )
