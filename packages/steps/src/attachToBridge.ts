import { Effect, Schema } from "effect"
import { Backend, type BackendError, type LinkChanges } from "@tscni/backend"
import { ensure, makeStep } from "@tscni/engine"
import { checkFailed, ignoreNotFound } from "./internal.ts"

/** Which link to plug into which bridge, with the bridge-port flags to set. */
export interface AttachToBridgeInput {
  readonly netns: string
  readonly link: string
  readonly bridge: string
  readonly hairpin?: boolean
  readonly isolated?: boolean
}

/** The port created; the flags are kept so check can verify them. */
export const AttachToBridgeHandle = Schema.Struct({
  netns: Schema.String,
  link: Schema.String,
  bridge: Schema.String,
  hairpin: Schema.optionalKey(Schema.Boolean),
  isolated: Schema.optionalKey(Schema.Boolean)
})
export type AttachToBridgeHandle = typeof AttachToBridgeHandle.Type

const STEP = "attachToBridge"

const portFlags = (input: AttachToBridgeInput): LinkChanges => ({
  ...(input.hairpin === undefined ? {} : { hairpin: input.hairpin }),
  ...(input.isolated === undefined ? {} : { isolated: input.isolated })
})

/**
 * Enslaves a link (the host end of a pod's veth) to a bridge and sets its port flags
 * (hairpin for pods that reach themselves through a service, isolated for tenant
 * separation). Undo releases it only while it is still a port of that bridge.
 */
export const attachToBridge = makeStep<AttachToBridgeInput, AttachToBridgeHandle, BackendError, Backend>({
  name: STEP,
  handle: AttachToBridgeHandle,
  apply: (input) =>
    Effect.gen(function*() {
      const backend = yield* Backend
      const flags = portFlags(input)
      // One change, so the port and its flags appear together or not at all.
      yield* backend.setLink(input.netns, input.link, { master: input.bridge, ...flags })
      return { netns: input.netns, link: input.link, bridge: input.bridge, ...flags }
    }),
  undo: (handle) =>
    Effect.gen(function*() {
      const backend = yield* Backend
      const link = yield* ignoreNotFound(backend.getLink(handle.netns, handle.link))
      if (link === undefined || link.master === undefined) return
      const bridge = yield* ignoreNotFound(backend.getLink(handle.netns, handle.bridge))
      // Our bridge is gone, or the link was enslaved elsewhere since: not ours to release.
      if (bridge === undefined || link.master !== bridge.index) return
      yield* ignoreNotFound(backend.setLink(handle.netns, handle.link, { master: null }))
    }),
  check: (handle) =>
    Effect.gen(function*() {
      const backend = yield* Backend
      const link = yield* ignoreNotFound(backend.getLink(handle.netns, handle.link))
      if (link === undefined) return yield* checkFailed(STEP, `${handle.link} is missing in ${handle.netns}`)
      const bridge = yield* ignoreNotFound(backend.getLink(handle.netns, handle.bridge))
      if (bridge === undefined) return yield* checkFailed(STEP, `bridge ${handle.bridge} is missing in ${handle.netns}`)
      yield* ensure(STEP, link.master === bridge.index, () => `${handle.link} is not a port of ${handle.bridge}`)
      const port = link.bridgePort
      if (handle.hairpin !== undefined) {
        yield* ensure(STEP, port?.hairpin === handle.hairpin, () =>
          `${handle.link}: hairpin is ${String(port?.hairpin)}, expected ${String(handle.hairpin)}`)
      }
      if (handle.isolated !== undefined) {
        yield* ensure(STEP, port?.isolated === handle.isolated, () =>
          `${handle.link}: isolated is ${String(port?.isolated)}, expected ${String(handle.isolated)}`)
      }
    })
})
