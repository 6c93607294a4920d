import { Effect, Schema } from "effect"
import { ensure, makeStep } from "@tscni/engine"
import type { CniError } from "@tscni/spec"
import { readState, removeState, type StateRecord, writeState } from "../state.ts"

/** The attachment's state file and the record to write there before anything is tuned. */
export interface SaveStateInput {
  readonly path: string
  readonly record: StateRecord
}

/** Just the file: undo removes it, check reads it back. */
export const SaveStateHandle = Schema.Struct({ path: Schema.String })
export type SaveStateHandle = typeof SaveStateHandle.Type

const STEP = "saveState"

/**
 * Persists what DEL will need (the previous values) before anything changes, so even an
 * ADD killed midway can be undone by the next DEL. Undo removes the file: a rolled-back
 * ADD leaves no state behind.
 */
export const saveState = makeStep<SaveStateInput, SaveStateHandle, CniError>({
  name: STEP,
  handle: SaveStateHandle,
  apply: (input) => writeState(input.path, input.record).pipe(Effect.as({ path: input.path })),
  undo: (handle) => removeState(handle.path),
  check: (handle) =>
    Effect.gen(function*() {
      const state = yield* readState(handle.path)
      yield* ensure(STEP, state._tag === "found", () => `the state file ${handle.path} is ${state._tag}`)
    })
})
