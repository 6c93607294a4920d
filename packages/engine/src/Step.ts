import { Effect, Schema } from "effect"

/**
 * The postcondition of an applied step no longer holds (someone changed it by hand,
 * or it was never there). What CHECK reports.
 */
export class CheckFailed extends Schema.TaggedError<CheckFailed>()("CheckFailed", {
  step: Schema.String,
  message: Schema.String
}) {}

/**
 * One reversible change to the host, as a value. `apply` returns a handle recording
 * exactly what was created (so `undo` can remove exactly that); the handle is
 * Schema-encodable so it can be journaled and rebuilt by DEL without ADD's memory.
 *
 * Contract every step honours:
 * - `undo` treats "already gone" as success and is idempotent;
 * - `undo` and `check` work from the handle alone, never from the step's input.
 */
export interface Step<in Input, Handle, out E = never, out R = never> {
  /** verb+noun, camelCase: `vethPair`, `addRoute` */
  readonly name: string
  readonly handle: Schema.Codec<Handle, unknown>
  readonly apply: (input: Input) => Effect.Effect<Handle, E, R>
  readonly undo: (handle: Handle) => Effect.Effect<void, E, R>
  readonly check: (handle: Handle) => Effect.Effect<void, E | CheckFailed, R>
}

/** Identity helper that infers a Step's type parameters from its definition. */
export const makeStep = <Input, Handle, E = never, R = never>(
  step: Step<Input, Handle, E, R>
): Step<Input, Handle, E, R> => step

/** Fails the check of `step` with `message` unless `condition` holds. */
export const ensure = (step: string, condition: boolean, message: () => string): Effect.Effect<void, CheckFailed> =>
  condition ? Effect.void : Effect.fail(new CheckFailed({ step, message: message() }))
