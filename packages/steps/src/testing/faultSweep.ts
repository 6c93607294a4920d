import { Cause, Effect, Exit, Logger, Option, References } from "effect"
import type { Backend, BackendErrorReason } from "@tscni/backend"
import * as MockBackend from "@tscni/backend-mock"
import { Pipeline } from "@tscni/engine"

type Mocked = Backend | MockBackend.MockControlService

/** How to run a sweep. */
export interface FaultSweepOptions<X> {
  /** Runs on each fresh kernel before the "before" snapshot (e.g. create the netns a plugin expects). */
  readonly setup?: Effect.Effect<unknown, unknown, Mocked | X>
  /** Observed before and after each run, e.g. an IPAM store; the results are returned for comparison. */
  readonly observe?: Effect.Effect<unknown, never, X>
  /** The reason the injected BackendError carries (default "Injected"). */
  readonly reason?: BackendErrorReason
  /** Safety bound on k (default 1000). */
  readonly maxCalls?: number
}

/** One apply with a fault at Backend call k. */
export interface FaultRun {
  readonly k: number
  /** `failed` (the fault surfaced) or `succeeded` (the fault fired but was tolerated) */
  readonly outcome: "failed" | "succeeded"
  /** name of the step whose apply failed (undefined when none did) */
  readonly failedStep: string | undefined
  /** names of the steps whose apply succeeded before, in order */
  readonly appliedSteps: ReadonlyArray<string>
  /** the operation the fault hit */
  readonly faultedOperation: string | undefined
  /** the first typed error of the failed apply */
  readonly error: unknown
  /** present when rolling back could not undo everything */
  readonly rollbackIncomplete: Pipeline.RollbackIncomplete | undefined
  /** kernel diff from before the run to after it (after undo for a tolerated success); [] means no residue */
  readonly diff: ReadonlyArray<string>
  readonly observedBefore: unknown
  readonly observedAfter: unknown
}

/** The run with no fault left to fire: the pipeline's normal success. */
export interface CleanRun<H> {
  /** the k at which no fault fired any more (the number of Backend calls apply makes + 1) */
  readonly k: number
  readonly handles: H
  /** kernel diff after apply (what the pipeline created) */
  readonly applied: ReadonlyArray<string>
  /** kernel diff after Pipeline.undo of the handles; [] means undo is exact */
  readonly undoDiff: ReadonlyArray<string>
  readonly undoError: unknown
  readonly observedBefore: unknown
  readonly observedAfter: unknown
}

/** Everything a sweep saw, for the test to assert on. */
export interface FaultSweepReport<H> {
  readonly runs: ReadonlyArray<FaultRun>
  readonly clean: CleanRun<H>
}

const STEP_LOG = /^step (\S+) apply (ok|failed|interrupted)\b/

const messageText = (message: unknown): string =>
  Array.isArray(message) ? message.map(String).join(" ") : String(message)

/** Runs `effect` recording the `step <name> apply <outcome>` lines the engine logs at debug level. */
const withStepLog = <A, E, R>(effect: Effect.Effect<A, E, R>) =>
  Effect.suspend(() => {
    const lines: Array<{ readonly step: string; readonly outcome: string }> = []
    const capture = Logger.make((options) => {
      const match = STEP_LOG.exec(messageText(options.message))
      if (match?.[1] !== undefined && match[2] !== undefined) lines.push({ step: match[1], outcome: match[2] })
    })
    return effect.pipe(
      Effect.exit,
      Effect.map((exit) => ({ exit, lines })),
      Effect.provideService(Logger.CurrentLoggers, new Set([capture])),
      Effect.provideService(References.MinimumLogLevel, "Debug")
    )
  })

const firstError = <E>(cause: Cause.Cause<E>): unknown =>
  Option.getOrElse(Cause.findErrorOption(cause), () => Cause.squash(cause))

const rollbackIncompleteOf = (cause: Cause.Cause<unknown>): Pipeline.RollbackIncomplete | undefined => {
  for (const reason of cause.reasons) {
    if (reason._tag === "Die" && reason.defect instanceof Pipeline.RollbackIncomplete) return reason.defect
  }
  return undefined
}

type Attempt<H> =
  | { readonly _tag: "Run"; readonly run: FaultRun }
  | { readonly _tag: "Clean"; readonly clean: CleanRun<H> }

/** One apply on a fresh kernel with a fault armed at call k. */
const attempt = <In, Known, H extends Record<string, unknown>, E, R, X>(
  pipeline: Pipeline.Pipeline<In, Known, H, E, R>,
  input: In,
  k: number,
  options: FaultSweepOptions<X>
): Effect.Effect<Attempt<H>, unknown, Mocked | R | X> =>
  Effect.gen(function*() {
    const control = yield* MockBackend.MockControlService
    if (options.setup) yield* options.setup
    const observe = options.observe ?? Effect.void
    const before = control.snapshot()
    const observedBefore = yield* observe
    const callsBefore = control.calls().length
    control.failNth(k, options.reason)
    const { exit, lines } = yield* withStepLog(Pipeline.apply(pipeline, input))
    control.clearFaults()
    const calls = control.calls().slice(callsBefore)
    const faultFired = calls.length >= k
    const faultedOperation = faultFired ? calls[k - 1]?.operation : undefined
    const appliedSteps = lines.filter((line) => line.outcome === "ok").map((line) => line.step)
    if (Exit.isSuccess(exit)) {
      const applied = control.diff(before, control.snapshot())
      const undone = yield* Effect.exit(Pipeline.undo(pipeline, exit.value))
      const undoDiff = control.diff(before, control.snapshot())
      const observedAfter = yield* observe
      if (faultFired) {
        return {
          _tag: "Run",
          run: {
            k,
            outcome: "succeeded",
            failedStep: undefined,
            appliedSteps,
            faultedOperation,
            error: undefined,
            rollbackIncomplete: undefined,
            diff: undoDiff,
            observedBefore,
            observedAfter
          }
        } as const
      }
      return {
        _tag: "Clean",
        clean: {
          k,
          handles: exit.value,
          applied,
          undoDiff,
          undoError: Exit.isFailure(undone) ? firstError(undone.cause) : undefined,
          observedBefore,
          observedAfter
        }
      } as const
    }
    const observedAfter = yield* observe
    return {
      _tag: "Run",
      run: {
        k,
        outcome: "failed",
        failedStep: lines.find((line) => line.outcome !== "ok")?.step,
        appliedSteps,
        faultedOperation,
        error: firstError(exit.cause),
        rollbackIncomplete: rollbackIncompleteOf(exit.cause),
        diff: control.diff(before, control.snapshot()),
        observedBefore,
        observedAfter
      }
    } as const
  })

/**
 * Fault injection at every step k: applies `pipeline` on a fresh mock kernel once per k =
 * 1, 2, …, with Backend call k failing, until a run makes fewer than k calls. Each run's
 * kernel diff (before vs. after the failed apply) should be [] — the pipeline's promise
 * that a failed ADD leaves no residue. The final clean run is undone with Pipeline.undo
 * and its diff reported too. Services the pipeline needs besides the Backend (X) are the
 * caller's to provide; they are shared by all runs.
 */
export const faultSweep = <In, Known, H extends Record<string, unknown>, E, R, X = Exclude<R, Mocked>>(
  pipeline: Pipeline.Pipeline<In, Known, H, E, R>,
  input: In,
  options: FaultSweepOptions<X> = {}
): Effect.Effect<FaultSweepReport<H>, unknown, Exclude<R | X, Mocked>> =>
  Effect.gen(function*() {
    const maxCalls = options.maxCalls ?? 1000
    const runs: Array<FaultRun> = []
    for (let k = 1; k <= maxCalls; k++) {
      const result = yield* Effect.provide(attempt(pipeline, input, k, options), MockBackend.layer)
      if (result._tag === "Clean") return { runs, clean: result.clean }
      runs.push(result.run)
    }
    return yield* Effect.die(new Error(`faultSweep: pipeline ${pipeline.name} still calls the Backend after ${maxCalls} calls`))
  })

/**
 * The runs of a sweep that did not fail cleanly at their own fault: each must have failed
 * with the injected error on the operation the fault hit, rolled back completely, and left
 * an empty diff. A test asserts this is []; when it is not, the offending runs print whole.
 */
export const runsNotFailedAtTheirFault = (report: FaultSweepReport<unknown>): ReadonlyArray<FaultRun> =>
  report.runs.filter((run) => {
    const error = run.error as { readonly operation?: unknown; readonly reason?: unknown } | undefined
    const ownFault = error?.operation === run.faultedOperation && error?.reason === "Injected"
    return !(run.outcome === "failed" && ownFault && run.rollbackIncomplete === undefined && run.diff.length === 0)
  })
