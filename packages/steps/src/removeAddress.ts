import { Effect, Schema } from "effect"
import { Backend, type BackendError, isNotFound } from "@tscni/backend"
import { ensure, makeStep } from "@tscni/engine"
import { ignoreNotFound } from "./internal.ts"

export interface RemoveAddressInput {
  readonly netns: string
  readonly link: string
  readonly cidr: string
}

/** `removed` is false when the address was not there (nothing to put back). */
export const RemoveAddressHandle = Schema.Struct({
  netns: Schema.String,
  link: Schema.String,
  cidr: Schema.String,
  removed: Schema.Boolean
})
export type RemoveAddressHandle = typeof RemoveAddressHandle.Type

const STEP = "removeAddress"

/**
 * Takes an address off a link (bridge `forceAddress`: a stale gateway address makes room
 * for the configured one); undo puts it back.
 */
export const removeAddress = makeStep<RemoveAddressInput, RemoveAddressHandle, BackendError, Backend>({
  name: STEP,
  handle: RemoveAddressHandle,
  apply: (input) =>
    Effect.gen(function*() {
      const removed = yield* (yield* Backend).deleteAddress(input.netns, input.link, input.cidr).pipe(
        Effect.as(true),
        Effect.catchIf(isNotFound, () => Effect.succeed(false))
      )
      return { ...input, removed }
    }),
  undo: (handle) =>
    Effect.gen(function*() {
      if (!handle.removed) return
      const backend = yield* Backend
      // the link itself is gone: there is nothing to put the address back on
      const addresses = yield* ignoreNotFound(backend.listAddresses(handle.netns, handle.link))
      if (addresses === undefined || addresses.some((a) => a.cidr === handle.cidr)) return
      yield* backend.addAddress(handle.netns, handle.link, handle.cidr)
    }),
  check: (handle) =>
    Effect.gen(function*() {
      const present = ((yield* ignoreNotFound((yield* Backend).listAddresses(handle.netns, handle.link))) ?? []).some((a) =>
        a.cidr === handle.cidr
      )
      yield* ensure(STEP, !present, () => `${handle.cidr} is back on ${handle.link}`)
    })
})
