import { Effect, Schema } from "effect"
import { Backend, type BackendError, type BackendShape } from "@tscni/backend"
import { compensated, ensure, makeStep } from "@tscni/engine"
import { checkFailed, ignoreNotFound } from "./internal.ts"

/** The link to bring up. */
export interface LinkUpInput {
  readonly netns: string
  readonly link: string
}

/**
 * `wasUp` records the state before, so undo only takes down what this step brought up.
 * `addedAddresses` are the addresses the kernel added by itself when the link came up
 * (`lo` gets 127.0.0.1/8 and ::1, and keeps the IPv4 one when taken down again); undo
 * removes them so the namespace is exactly as before.
 */
export const LinkUpHandle = Schema.Struct({
  netns: Schema.String,
  link: Schema.String,
  wasUp: Schema.Boolean,
  addedAddresses: Schema.optionalKey(Schema.Array(Schema.String))
})
export type LinkUpHandle = typeof LinkUpHandle.Type

const STEP = "linkUp"

const cidrsOf = (backend: BackendShape, netns: string, link: string) =>
  backend.listAddresses(netns, link).pipe(Effect.map((addresses) => addresses.map((address) => address.cidr)))

/** Takes the link down again and removes addresses that were not there before. */
const revert = (backend: BackendShape, input: LinkUpInput, before: ReadonlyArray<string>) =>
  Effect.gen(function*() {
    yield* backend.setLink(input.netns, input.link, { up: false })
    for (const cidr of yield* cidrsOf(backend, input.netns, input.link)) {
      if (!before.includes(cidr)) yield* ignoreNotFound(backend.deleteAddress(input.netns, input.link, cidr))
    }
  })

/** Sets a link administratively up (a veth end, a pod's loopback). */
export const linkUp = makeStep<LinkUpInput, LinkUpHandle, BackendError, Backend>({
  name: STEP,
  handle: LinkUpHandle,
  apply: (input) =>
    Effect.gen(function*() {
      const backend = yield* Backend
      const link = yield* backend.getLink(input.netns, input.link)
      if (link.up) return { netns: input.netns, link: input.link, wasUp: true }
      const before = yield* cidrsOf(backend, input.netns, input.link)
      yield* backend.setLink(input.netns, input.link, { up: true })
      const after = yield* compensated(STEP, cidrsOf(backend, input.netns, input.link), revert(backend, input, before))
      const addedAddresses = after.filter((cidr) => !before.includes(cidr))
      return { netns: input.netns, link: input.link, wasUp: false, addedAddresses }
    }),
  undo: (handle) =>
    Effect.gen(function*() {
      if (handle.wasUp) return
      const backend = yield* Backend
      yield* ignoreNotFound(backend.setLink(handle.netns, handle.link, { up: false }))
      for (const cidr of handle.addedAddresses ?? []) {
        yield* ignoreNotFound(backend.deleteAddress(handle.netns, handle.link, cidr))
      }
    }),
  check: (handle) =>
    Effect.gen(function*() {
      const backend = yield* Backend
      const link = yield* ignoreNotFound(backend.getLink(handle.netns, handle.link))
      if (link === undefined) return yield* checkFailed(STEP, `${handle.link} is missing in ${handle.netns}`)
      yield* ensure(STEP, link.up, () => `${handle.link} in ${handle.netns} is down`)
    })
})
