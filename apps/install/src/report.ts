import { Cause, Effect } from "effect"
import type { Step } from "@tscni/engine"
import { Reporter } from "./Reporter.ts"

/** The words a step is reported with. */
export interface StepWords<I, H> {
  /** what the step is about to do, from its input: `install /opt/cni/bin/tscni` */
  readonly doing: (input: I) => string
  /** what it did, from its handle: `install /opt/cni/bin/tscni (new)` */
  readonly done: (handle: H) => string
  /** what its undo takes back: `remove /opt/cni/bin/tscni`; undefined prints no line (an undo that does nothing) */
  readonly undoing: (handle: H) => string | undefined
}

/** The message of whatever a cause holds, for one output line. */
export const causeMessage = (cause: Cause.Cause<unknown>): string => {
  if (Cause.hasInterruptsOnly(cause)) return "interrupted"
  const error = Cause.squash(cause)
  if (error instanceof Error) return error.message
  if (typeof error === "object" && error !== null && "message" in error && typeof error.message === "string") {
    return error.message
  }
  return String(error)
}

/**
 * The same step, printing one line for each apply and each undo (ok / failed / undone),
 * so the output of an install is its plan as it happened.
 */
export const reported = <I, H, E, R>(step: Step<I, H, E, R>, words: StepWords<I, H>): Step<I, H, E, R | Reporter> => ({
  ...step,
  apply: (input) =>
    Effect.gen(function*() {
      const reporter = yield* Reporter
      return yield* step.apply(input).pipe(
        Effect.tap((handle) => reporter.line("ok", words.done(handle))),
        Effect.onError((cause) => reporter.line("failed", `${words.doing(input)}: ${causeMessage(cause)}`))
      )
    }),
  undo: (handle) =>
    Effect.gen(function*() {
      const reporter = yield* Reporter
      const text = words.undoing(handle)
      if (text === undefined) return yield* step.undo(handle)
      return yield* step.undo(handle).pipe(
        Effect.tap(() => reporter.line("undone", text)),
        Effect.onError((cause) => reporter.line("undo failed", `${text}: ${causeMessage(cause)}`))
      )
    })
})
