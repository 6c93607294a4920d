import { Effect, Schema } from "effect"
import { Backend, type BackendError, type ConntrackFilter } from "@tscni/backend"
import { makeStep } from "@tscni/engine"

/** The stale flows to forget: one filter per UDP hostPort and family. */
export interface FlushConntrackInput {
  readonly netns: string
  readonly filters: ReadonlyArray<ConntrackFilter>
}

/** Only records how many entries went: forgetting is not undone, so there is nothing to restore. */
export const FlushConntrackHandle = Schema.Struct({ netns: Schema.String, flushed: Schema.Number })
export type FlushConntrackHandle = typeof FlushConntrackHandle.Type

/**
 * Forgets tracked UDP flows to a new hostPort: a flow seen before the mapping existed keeps
 * its un-NATed entry and would never reach the pod until it times out. Forgetting stale
 * state is not something to undo, so undo and check do nothing.
 */
export const flushConntrack = makeStep<FlushConntrackInput, FlushConntrackHandle, BackendError, Backend>({
  name: "flushConntrack",
  handle: FlushConntrackHandle,
  apply: (input) =>
    Effect.gen(function*() {
      const backend = yield* Backend
      let flushed = 0
      for (const filter of input.filters) flushed += yield* backend.deleteConntrack(input.netns, filter)
      return { netns: input.netns, flushed }
    }),
  undo: () => Effect.void,
  check: () => Effect.void
})
