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
  readonly locate: (known: unknown, purpose: Purpose) => unknown
}

/** Returned by an input function to leave a step out of this run (it gets no handle). */
export const skip: unique symbol = Symbol.for("tscni/engine/skip")
/** Lets an input function's return type say "an input, or leave this step out". */
export type Skip = typeof skip

/** Why handles are located again without ADD's memory: to undo them (DEL) or to verify them (CHECK). */
export type Purpose = "del" | "check"

/**
 * How a step's handle is found again for DEL and CHECK, from what those commands know of the
 * attachment (`Known`: the config, the request, prevResult, saved state, lookups the plugin
 * made). It returns the handle ADD would have made, as far as undo and check need it, or
 * `skip` when there is nothing of this step to undo or verify for that purpose. Every step
 * has one, next to its input function, so a step cannot be added without saying how DEL
 * finds it.
 */
export type Locate<Known, SH> = (known: Known, purpose: Purpose) => SH | Skip

/**
 * A step DEL leaves alone: shared with other pods (a bridge, its gateway address, host
 * switches), or gone with another step's undo (what lives on the pod's interface goes with
 * the interface). It is located for CHECK only.
 */
export const checkOnly = <Known, SH>(locate: (known: Known) => SH | Skip): Locate<Known, SH> => (known, purpose) =>
  purpose === "check" ? locate(known) : skip

/** A step with nothing DEL or CHECK could find or would act on (a derived value, a flush). */
export const unlocated = (): Skip => skip

/**
 * The `locate` argument of a step: required when the pipeline says what DEL and CHECK know
 * (a CNI plugin's), absent when it has no `Known` (a pipeline only ever applied, as the
 * installer's).
 */
export type LocateArgument<Known, SH> = [Known] extends [never] ? [] : [locate: Locate<Known, SH>]

/**
 * A sequence of steps; each step's input is computed from the pipeline input and the
 * handles of the steps before it. Build it with `Pipeline.make<Input>(name).step(…)`.
 *
 * Type parameters: `In` pipeline input, `H` the record of handles by key, `E` / `R` the
 * union of the steps' errors and requirements.
 */
export class Pipeline<In, Known, H extends Record<string, unknown>, E, R> {
  private constructor(
    readonly name: string,
    readonly entries: ReadonlyArray<Entry>
  ) {}

  /** Use `Pipeline.make` from this module. */
  static empty<In, Known>(name: string): Pipeline<In, Known, {}, never, never> {
    return new Pipeline(name, [])
  }

  /**
   * Appends a step that always runs. Its handle is available to later steps as
   * `handles[key]`; `locate` finds it again for DEL and CHECK.
   */
  step<K extends string, I, SH, SE, SR>(
    key: K & (K extends keyof H ? never : K),
    step: Step<I, SH, SE, SR>,
    input: (input: In, handles: H) => I,
    ...locate: LocateArgument<Known, SH>
  ): Pipeline<In, Known, H & { readonly [k in K]: SH }, E | SE, R | SR> {
    return this.append(key, step, input, locate[0])
  }

  /** Appends a step whose input function may return `skip`; its handle may then be absent. */
  optionalStep<K extends string, I, SH, SE, SR>(
    key: K & (K extends keyof H ? never : K),
    step: Step<I, SH, SE, SR>,
    input: (input: In, handles: H) => I | Skip,
    ...locate: LocateArgument<Known, SH>
  ): Pipeline<In, Known, H & { readonly [k in K]?: SH }, E | SE, R | SR> {
    return this.append(key, step, input, locate[0])
  }

  // oxlint-disable-next-line typescript/no-explicit-any
  private append(key: string, step: AnyStep, input: unknown, locate: Locate<Known, unknown> | undefined): Pipeline<In, Known, any, any, any> {
    return new Pipeline(this.name, [
      ...this.entries,
      { key, step, input: input as Entry["input"], locate: (locate ?? unlocated) as Entry["locate"] }
    ])
  }

  /** Step names in order, for dry runs and docs. */
  get plan(): ReadonlyArray<{ readonly key: string; readonly step: string }> {
    return this.entries.map((entry) => ({ key: entry.key, step: entry.step.name }))
  }
}

/**
 * Starts a pipeline: `Pipeline.make<BridgeInput, BridgeKnown>("bridge").step("veth", vethPair, input, locate)`.
 * `In` is ADD's input; `Known` what DEL and CHECK know of an attachment, from which every
 * step's `locate` finds its handle. Without `Known` the pipeline is only ever applied (and
 * undone from the handles apply returned): its steps take no `locate`.
 */
export const make = <In, Known = never>(name: string): Pipeline<In, Known, {}, never, never> => Pipeline.empty<In, Known>(name)

/** The handles of a pipeline by step key (absent for skipped steps), as ADD returns them. */
export type HandlesOf<P> = P extends Pipeline<infer _In, infer _Known, infer H, infer _E, infer _R> ? H : never

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
export const apply = <In, Known, H extends Record<string, unknown>, E, R>(
  pipeline: Pipeline<In, Known, H, E, R>,
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
 * with the handles `locate` found (see runDel).
 */
export const undo = <In, Known, H extends Record<string, unknown>, E, R>(
  pipeline: Pipeline<In, Known, H, E, R>,
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
export const check = <In, Known, H extends Record<string, unknown>, E, R>(
  pipeline: Pipeline<In, Known, H, E, R>,
  handles: Partial<H>
): Effect.Effect<void, E | CheckFailed, R> =>
  Effect.gen(function*() {
    for (const entry of pipeline.entries) {
      const handle = (handles as Record<string, unknown>)[entry.key]
      if (handle === undefined) continue
      yield* traceStep(entry.step.name, "check", entry.step.check(handle))
    }
  }) as Effect.Effect<void, E | CheckFailed, R>

/** Every step's handle as its `locate` finds it for `purpose` (steps that answer `skip` are absent). */
export const locate = <In, Known, H extends Record<string, unknown>, E, R>(
  pipeline: Pipeline<In, Known, H, E, R>,
  known: Known,
  purpose: Purpose
): Partial<H> => {
  const handles: Record<string, unknown> = {}
  for (const entry of pipeline.entries) {
    const handle = entry.locate(known, purpose)
    if (handle !== skip) handles[entry.key] = handle
  }
  return handles as Partial<H>
}

/** DEL: locates what the attachment's ADD made and undoes it (see `undo`). */
export const runDel = <In, Known, H extends Record<string, unknown>, E, R>(
  pipeline: Pipeline<In, Known, H, E, R>,
  known: Known
): Effect.Effect<void, UndoIncomplete, R> => undo(pipeline, locate(pipeline, known, "del"))

/** CHECK: locates what the attachment's ADD promised and verifies it (see `check`). */
export const runCheck = <In, Known, H extends Record<string, unknown>, E, R>(
  pipeline: Pipeline<In, Known, H, E, R>,
  known: Known
): Effect.Effect<void, E | CheckFailed, R> => check(pipeline, locate(pipeline, known, "check"))

/** Encodes a handle record with each step's handle schema (for journals and caches). */
export const encodeHandles = <In, Known, H extends Record<string, unknown>, E, R>(
  pipeline: Pipeline<In, Known, H, E, R>,
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
export const decodeHandles = <In, Known, H extends Record<string, unknown>, E, R>(
  pipeline: Pipeline<In, Known, H, E, R>,
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
