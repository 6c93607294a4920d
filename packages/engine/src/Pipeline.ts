import { Cause, Effect, Exit, Ref, Schema } from "effect"
import type { CheckFailed, Step } from "./Step.ts"
import { traceStep } from "./trace.ts"

/** One undo that failed, by step key, with the failure rendered for humans. */
export const UndoFailure = Schema.Struct({ step: Schema.String, message: Schema.String })
export type UndoFailure = typeof UndoFailure.Type

/**
 * Attached (as an extra reason in the Cause, next to the original error) when rolling
 * back a failed apply could not undo everything. The caller still sees the original
 * typed error first.
 */
export class RollbackIncomplete extends Schema.TaggedError<RollbackIncomplete>()("RollbackIncomplete", {
  failures: Schema.Array(UndoFailure)
}) {}

/** DEL tried every undo; these ones failed. */
export class UndoIncomplete extends Schema.TaggedError<UndoIncomplete>()("UndoIncomplete", {
  failures: Schema.Array(UndoFailure)
}) {}

// Entries are stored type-erased; the builder methods keep the public types exact.
// oxlint-disable-next-line typescript/no-explicit-any
type AnyStep = Step<any, any, any, any>
interface Entry {
  readonly key: string
  readonly step: AnyStep
  readonly input: (input: unknown, handles: Record<string, unknown>) => unknown
}

/** Returned by an input function to leave a step out of this run (it gets no handle). */
export const skip: unique symbol = Symbol.for("tscni/engine/skip")
/** Lets an input function's return type say "an input, or leave this step out". */
export type Skip = typeof skip

/**
 * A sequence of steps; each step's input is computed from the pipeline input and the
 * handles of the steps before it. Build it with `Pipeline.make<Input>(name).step(…)`.
 *
 * Type parameters: `In` pipeline input, `H` the record of handles by key, `E` / `R` the
 * union of the steps' errors and requirements.
 */
export class Pipeline<In, H extends Record<string, unknown>, E, R> {
  private constructor(
    readonly name: string,
    readonly entries: ReadonlyArray<Entry>
  ) {}

  /** Use `Pipeline.make` from this module. */
  static empty<In>(name: string): Pipeline<In, {}, never, never> {
    return new Pipeline(name, [])
  }

  /** Appends a step that always runs. Its handle is available to later steps as `handles[key]`. */
  step<K extends string, I, SH, SE, SR>(
    key: K & (K extends keyof H ? never : K),
    step: Step<I, SH, SE, SR>,
    input: (input: In, handles: H) => I
  ): Pipeline<In, H & { readonly [k in K]: SH }, E | SE, R | SR> {
    return new Pipeline(this.name, [...this.entries, { key, step, input: input as Entry["input"] }])
  }

  /** Appends a step whose input function may return `skip`; its handle may then be absent. */
  optionalStep<K extends string, I, SH, SE, SR>(
    key: K & (K extends keyof H ? never : K),
    step: Step<I, SH, SE, SR>,
    input: (input: In, handles: H) => I | Skip
  ): Pipeline<In, H & { readonly [k in K]?: SH }, E | SE, R | SR> {
    return new Pipeline(this.name, [...this.entries, { key, step, input: input as Entry["input"] }])
  }

  /** Step names in order, for dry runs and docs. */
  get plan(): ReadonlyArray<{ readonly key: string; readonly step: string }> {
    return this.entries.map((entry) => ({ key: entry.key, step: entry.step.name }))
  }
}

/** Starts a pipeline: `Pipeline.make<BridgeInput>("bridge").step("veth", vethPair, …)`. */
export const make = <In>(name: string): Pipeline<In, {}, never, never> => Pipeline.empty<In>(name)

const describe = (cause: Cause.Cause<unknown>): string => {
  const error = Cause.squash(cause)
  return error instanceof Error ? error.message : String(error)
}

/** Runs one undo; a failure is recorded, never raised, so the others still run. */
const undoCollecting = (entry: Entry, handle: unknown, failures: Ref.Ref<ReadonlyArray<UndoFailure>>) =>
  traceStep(entry.step.name, "undo", entry.step.undo(handle)).pipe(
    Effect.catchCause((cause) => Ref.update(failures, (list) => [...list, { step: entry.key, message: describe(cause) }]))
  )

/**
 * Applies every step in order. On failure or interruption, the steps applied so far are
 * undone in reverse order (each registered in a Scope with release-on-failure), and the
 * original error is returned with any undo failures attached as RollbackIncomplete.
 * A running step's apply is not cut short by an interrupt (what it did would have no handle
 * to undo): it finishes, then the rollback undoes it with the rest.
 */
export const apply = <In, H extends Record<string, unknown>, E, R>(
  pipeline: Pipeline<In, H, E, R>,
  input: In
): Effect.Effect<H, E, R> =>
  Effect.gen(function*() {
    const failures = yield* Ref.make<ReadonlyArray<UndoFailure>>([])
    const applyAll = Effect.gen(function*() {
      const handles: Record<string, unknown> = {}
      for (const entry of pipeline.entries) {
        const stepInput = entry.input(input, handles)
        if (stepInput === skip) continue
        const handle = yield* Effect.acquireRelease(
          traceStep(entry.step.name, "apply", entry.step.apply(stepInput)),
          (handle, exit) => (Exit.isFailure(exit) ? undoCollecting(entry, handle, failures) : Effect.void)
        )
        handles[entry.key] = handle
      }
      return handles as H
    })
    const exit = yield* Effect.exit(Effect.scoped(applyAll))
    if (Exit.isSuccess(exit)) return exit.value
    const undoFailures = yield* Ref.get(failures)
    const cause = undoFailures.length === 0
      ? exit.cause
      : Cause.combine(exit.cause, Cause.die(new RollbackIncomplete({ failures: undoFailures })))
    return yield* Effect.failCause(cause)
  }) as Effect.Effect<H, E, R>

/**
 * Undoes every step whose handle is present, in reverse order, tolerantly: every undo
 * runs even when an earlier one failed; the failures are reported together. What DEL runs,
 * with handles rebuilt from config, prevResult and persisted state.
 */
export const undo = <In, H extends Record<string, unknown>, E, R>(
  pipeline: Pipeline<In, H, E, R>,
  handles: Partial<H>
): Effect.Effect<void, UndoIncomplete, R> =>
  Effect.gen(function*() {
    const failures = yield* Ref.make<ReadonlyArray<UndoFailure>>([])
    for (const entry of [...pipeline.entries].reverse()) {
      const handle = (handles as Record<string, unknown>)[entry.key]
      if (handle === undefined) continue
      yield* undoCollecting(entry, handle, failures)
    }
    const undoFailures = yield* Ref.get(failures)
    if (undoFailures.length > 0) return yield* new UndoIncomplete({ failures: undoFailures })
  }) as Effect.Effect<void, UndoIncomplete, R>

/** Checks every step whose handle is present, in order, stopping at the first failure. */
export const check = <In, H extends Record<string, unknown>, E, R>(
  pipeline: Pipeline<In, H, E, R>,
  handles: Partial<H>
): Effect.Effect<void, E | CheckFailed, R> =>
  Effect.gen(function*() {
    for (const entry of pipeline.entries) {
      const handle = (handles as Record<string, unknown>)[entry.key]
      if (handle === undefined) continue
      yield* traceStep(entry.step.name, "check", entry.step.check(handle))
    }
  }) as Effect.Effect<void, E | CheckFailed, R>

/** Encodes a handle record with each step's handle schema (for journals and caches). */
export const encodeHandles = <In, H extends Record<string, unknown>, E, R>(
  pipeline: Pipeline<In, H, E, R>,
  handles: Partial<H>
): Record<string, unknown> => {
  const encoded: Record<string, unknown> = {}
  for (const entry of pipeline.entries) {
    const handle = (handles as Record<string, unknown>)[entry.key]
    if (handle !== undefined) encoded[entry.key] = Schema.encodeSync(entry.step.handle)(handle)
  }
  return encoded
}

/**
 * Decodes what encodeHandles produced. Entries that do not decode are not dropped in
 * silence: they are returned in `undecodable` (step key and why), for the caller to decide
 * what a DEL without them may do (an undo it cannot run is restore data lost).
 */
export const decodeHandles = <In, H extends Record<string, unknown>, E, R>(
  pipeline: Pipeline<In, H, E, R>,
  encoded: Record<string, unknown>
): { readonly handles: Partial<H>; readonly undecodable: ReadonlyArray<UndoFailure> } => {
  const handles: Record<string, unknown> = {}
  const undecodable: Array<UndoFailure> = []
  for (const entry of pipeline.entries) {
    if (!(entry.key in encoded)) continue
    const decoded = Schema.decodeUnknownExit(entry.step.handle)(encoded[entry.key])
    if (Exit.isSuccess(decoded)) handles[entry.key] = decoded.value
    else undecodable.push({ step: entry.key, message: describe(decoded.cause) })
  }
  return { handles: handles as Partial<H>, undecodable }
}
