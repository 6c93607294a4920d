import { Effect, type Schema } from "effect"
import type { Step } from "./Step.ts"

/**
 * A step that changes nothing: it computes a value from earlier handles (a plan worked out
 * from the IPAM result, say) and can fail if that value is unusable, so later steps get it
 * as a handle and a bad plan stops the pipeline through the normal rollback.
 */
export const derive = <I, A, E = never, R = never>(
  name: string,
  handle: Schema.Codec<A, unknown>,
  compute: (input: I) => Effect.Effect<A, E, R>
): Step<I, A, E, R> => ({
  name,
  handle,
  apply: compute,
  undo: () => Effect.void,
  check: () => Effect.void
})
