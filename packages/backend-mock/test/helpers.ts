import type { BackendError, BackendErrorReason } from "@tscni/backend"
import { Effect } from "effect"
import { makeMockBackend } from "../src/index.ts"

/** A fresh mock kernel for one test. */
export const fresh = () => makeMockBackend()

/** Runs a mock operation expected to succeed (the mock is synchronous). */
export const ok = <A>(effect: Effect.Effect<A, BackendError>): A => Effect.runSync(effect)

/** Runs a mock operation and returns the reason it failed with, or "succeeded". */
export const reason = <A>(effect: Effect.Effect<A, BackendError>): BackendErrorReason | "succeeded" =>
  Effect.runSync(
    effect.pipe(
      Effect.as("succeeded" as const),
      Effect.catchTag("BackendError", (error) => Effect.succeed(error.reason))
    )
  )

/** Runs a mock operation expected to fail and returns the error. */
export const failure = <A>(effect: Effect.Effect<A, BackendError>): BackendError =>
  Effect.runSync(
    effect.pipe(
      Effect.flatMap((value) => Effect.die(new Error(`expected a failure, got ${JSON.stringify(value)}`))),
      Effect.catchTag("BackendError", (error) => Effect.succeed(error))
    )
  )
