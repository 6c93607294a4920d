import { Effect } from "effect"
import { type BackendError, isNotFound } from "@tscni/backend"
import { CheckFailed } from "@tscni/engine"

/**
 * Undo and DEL treat "already gone" as success: this turns a NotFound BackendError into
 * success and leaves every other failure alone.
 */
export const ignoreNotFound = <A, R>(
  effect: Effect.Effect<A, BackendError, R>
): Effect.Effect<A | undefined, BackendError, R> =>
  effect.pipe(Effect.catchIf(isNotFound, () => Effect.succeed(undefined)))

/**
 * Removing something from a facility the kernel does not have (no libnftables, no ip6tables)
 * finds nothing of ours there: for undo, DEL and GC that is "already gone" too.
 */
export const ignoreAbsent = <A, R>(
  effect: Effect.Effect<A, BackendError, R>
): Effect.Effect<A | undefined, BackendError, R> =>
  effect.pipe(
    Effect.catchIf((error) => error.reason === "NotFound" || error.reason === "Unsupported", () => Effect.succeed(undefined))
  )

/** Fails a check: `return yield* checkFailed(step, message)`. */
export const checkFailed = (step: string, message: string): Effect.Effect<never, CheckFailed> =>
  Effect.fail(new CheckFailed({ step, message }))
