import { Cause, Effect, Exit, Option } from "effect"
import type { CniError } from "../src/index.ts"

/** Runs an effect expected to succeed and returns its value. */
export const ok = <A>(effect: Effect.Effect<A, CniError>): A => Effect.runSync(effect)

/** Runs an effect expected to fail with a CniError and returns the error. */
export const fail = <A>(effect: Effect.Effect<A, CniError>): CniError => {
  const exit = Effect.runSyncExit(effect)
  if (Exit.isSuccess(exit)) throw new Error(`expected failure, got ${JSON.stringify(exit.value)}`)
  const error = Cause.findErrorOption(exit.cause)
  if (Option.isNone(error)) throw new Error(`expected a typed failure, got ${Cause.pretty(exit.cause)}`)
  return error.value
}
