import { Cause, Effect, Schema } from "effect"
import { Pipeline } from "@tscni/engine"
import { InstallError } from "./errors.ts"
import { causeMessage } from "./report.ts"

/**
 * Why an install or uninstall did not complete, ready to print: the first error, whether
 * anything had been changed (then it was rolled back), and any undo that failed.
 */
export class RunFailed extends Schema.TaggedError<RunFailed>()("RunFailed", {
  command: Schema.Literals(["install", "uninstall"]),
  /** "validate": nothing was touched; "apply": steps ran and were rolled back */
  stage: Schema.Literals(["validate", "apply"]),
  reason: Schema.String,
  message: Schema.String,
  rollbackFailures: Schema.Array(Pipeline.UndoFailure)
}) {}

const rollbackFailuresOf = (cause: Cause.Cause<unknown>): ReadonlyArray<Pipeline.UndoFailure> =>
  cause.reasons.flatMap((reason) =>
    Cause.isDieReason(reason) && reason.defect instanceof Pipeline.RollbackIncomplete ? reason.defect.failures : []
  )

const describeError = (error: InstallError): string =>
  error.path === "" || error.message.includes(error.path) ? error.message : `${error.operation} ${error.path}: ${error.message}`

/** Turns whatever a stage failed with (typed error, defect, interruption) into a RunFailed. */
export const toRunFailed = (command: RunFailed["command"], stage: RunFailed["stage"]) =>
<A, R>(effect: Effect.Effect<A, InstallError, R>): Effect.Effect<A, RunFailed, R> =>
  effect.pipe(
    Effect.catchCause((cause) => {
      const failure = cause.reasons.find(Cause.isFailReason)
      const error = failure?.error
      return Effect.fail(
        new RunFailed({
          command,
          stage,
          reason: error instanceof InstallError ? error.reason : Cause.hasInterruptsOnly(cause) ? "Interrupted" : "Unknown",
          message: error instanceof InstallError ? describeError(error) : causeMessage(cause),
          rollbackFailures: rollbackFailuresOf(cause)
        })
      )
    })
  )

/** The lines printed on stderr for a failed run. */
export const failureText = (failed: RunFailed): ReadonlyArray<string> => {
  const lines = [`tscni-install: ${failed.command} failed: ${failed.message}`]
  if (failed.rollbackFailures.length > 0) {
    lines.push("tscni-install: ROLLBACK INCOMPLETE; these undos failed, fix by hand:")
    for (const failure of failed.rollbackFailures) lines.push(`  ${failure.step}: ${failure.message}`)
  } else if (failed.stage === "apply") {
    lines.push("tscni-install: every change was rolled back; the target dirs are as they were")
  } else {
    lines.push("tscni-install: nothing was changed")
  }
  return lines
}
