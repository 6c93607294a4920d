import { Clock, Effect, Exit, LogLevel } from "effect"

/** Which of a step's functions ran; labels the span and the debug log line. */
export type StepPhase = "apply" | "undo" | "check"

/**
 * Runs one phase of one step with a span and a debug log line carrying name, phase,
 * duration and outcome. Visible with `TSCNI_LOG=debug` (see @tscni/skel). At any other
 * level the step runs bare: the span, the clock reads and the annotated log line cost
 * ~0.1 ms per step, over a millisecond per bridge ADD on the agent (measured), for nothing.
 */
export const traceStep = <A, E, R>(
  name: string,
  phase: StepPhase,
  effect: Effect.Effect<A, E, R>
): Effect.Effect<A, E, R> =>
  Effect.flatMap(LogLevel.isEnabled("Debug"), (debug) => debug ? traced(name, phase, effect) : effect)

const traced = <A, E, R>(name: string, phase: StepPhase, effect: Effect.Effect<A, E, R>): Effect.Effect<A, E, R> =>
  Effect.gen(function*() {
    const start = yield* Clock.currentTimeMillis
    const exit = yield* Effect.exit(effect)
    const durationMs = (yield* Clock.currentTimeMillis) - start
    const outcome = Exit.isSuccess(exit) ? "ok" : Exit.hasInterrupts(exit) ? "interrupted" : "failed"
    yield* Effect.logDebug(`step ${name} ${phase} ${outcome} in ${durationMs}ms`).pipe(
      Effect.annotateLogs({ step: name, phase, outcome, durationMs })
    )
    return yield* exit
  }).pipe(Effect.withSpan(`step.${name}.${phase}`))
