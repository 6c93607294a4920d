import { Effect, Schema } from "effect"
import { Backend, type BackendError, HOST_NETNS } from "@tscni/backend"
import { compensated, ensure, makeStep } from "@tscni/engine"
import { ignoreNotFound } from "@tscni/steps"

/** The ifb that carries the pod's egress, sized like the host veth it takes traffic from. */
export interface CreateIfbInput {
  readonly netns: string
  readonly name: string
  /** the host veth's, so a full-size packet fits the ifb */
  readonly mtu: number
  /** the host veth's, as the reference plugin sets it */
  readonly txqlen: number
  /** names the network and attachment, for GC */
  readonly alias: string
}

/**
 * The ifb made; `mac` goes into the ADD result's interfaces. Undo and check use only the
 * name (CHECK and DEL rebuild the handle with index 0 and no MAC).
 */
export const CreateIfbHandle = Schema.Struct({
  netns: Schema.String,
  name: Schema.String,
  index: Schema.Number,
  mac: Schema.String
})
export type CreateIfbHandle = typeof CreateIfbHandle.Type

const STEP = "createIfb"

/**
 * Creates an intermediate functional block device, up, to carry the pod's egress through a
 * tbf (a qdisc shapes only what a link sends; the ifb turns the host veth's received
 * traffic into sent traffic). Undo deletes it if it is still an ifb; "already gone" is fine.
 */
export const createIfb = makeStep<CreateIfbInput, CreateIfbHandle, BackendError, Backend>({
  name: STEP,
  handle: CreateIfbHandle,
  apply: (input) =>
    Effect.gen(function*() {
      const backend = yield* Backend
      yield* backend.createLink({ netns: input.netns, name: input.name, kind: "ifb", mtu: input.mtu, alias: input.alias })
      // a half-made ifb is not left behind
      const link = yield* compensated(STEP, backend.setLink(input.netns, input.name, { up: true, txqlen: input.txqlen }), backend.deleteLink(input.netns, input.name))
      return { netns: input.netns, name: input.name, index: link.index, mac: link.mac }
    }),
  undo: (handle) =>
    Effect.gen(function*() {
      const backend = yield* Backend
      const link = yield* ignoreNotFound(backend.getLink(handle.netns, handle.name))
      if (link === undefined || link.kind !== "ifb") return
      yield* ignoreNotFound(backend.deleteLink(handle.netns, handle.name))
    }),
  check: (handle) =>
    Effect.gen(function*() {
      const link = yield* ignoreNotFound((yield* Backend).getLink(handle.netns, handle.name))
      const where = handle.netns === HOST_NETNS ? "" : ` in ${handle.netns}`
      yield* ensure(STEP, link !== undefined, () => `ifb ${handle.name}${where} is missing`)
      yield* ensure(STEP, link?.kind === "ifb", () => `${handle.name}${where} is not an ifb device`)
      yield* ensure(STEP, link?.up === true, () => `ifb ${handle.name}${where} is down`)
    })
})
