import { Effect, Schema } from "effect"
import { Backend, type BackendError } from "@tscni/backend"
import { ensure, makeStep } from "@tscni/engine"
import { ignoreNotFound } from "@tscni/steps"

/** The link that needs an ingress qdisc: the host veth whose received (pod egress) traffic is redirected. */
export interface AddIngressQdiscInput {
  readonly netns: string
  readonly link: string
}

/** Names the link alone: undo and check recognise our qdisc by its kind and parent, not by an id. */
export const AddIngressQdiscHandle = Schema.Struct({ netns: Schema.String, link: Schema.String })
export type AddIngressQdiscHandle = typeof AddIngressQdiscHandle.Type

const STEP = "addIngressQdisc"

/**
 * Adds the ingress qdisc (`ffff:`) filters on a link's received traffic hang from. Undo
 * removes it only while it is a plain ingress qdisc (never a clsact, someone else's) and no
 * redirect is left on it: the redirect step's undo runs first and removes ours.
 */
export const addIngressQdisc = makeStep<AddIngressQdiscInput, AddIngressQdiscHandle, BackendError, Backend>({
  name: STEP,
  handle: AddIngressQdiscHandle,
  apply: (input) =>
    Effect.gen(function*() {
      yield* (yield* Backend).addQdisc(input.netns, { link: input.link, kind: "ingress", parent: "ingress" })
      return { netns: input.netns, link: input.link }
    }),
  undo: (handle) =>
    Effect.gen(function*() {
      const backend = yield* Backend
      const qdiscs = yield* ignoreNotFound(backend.listQdiscs(handle.netns, handle.link))
      if (qdiscs === undefined || !qdiscs.some((q) => q.parent === "ingress" && q.kind === "ingress")) return
      // a link gone since the line above took its qdisc with it
      const redirects = yield* ignoreNotFound(backend.listRedirects(handle.netns, handle.link))
      if (redirects === undefined || redirects.length > 0) return
      yield* ignoreNotFound(backend.deleteQdisc(handle.netns, handle.link, "ingress"))
    }),
  check: (handle) =>
    Effect.gen(function*() {
      const qdiscs = yield* (yield* Backend).listQdiscs(handle.netns, handle.link)
      yield* ensure(STEP, qdiscs.some((q) => q.parent === "ingress" && q.kind === "ingress"), () => `${handle.link} has no ingress qdisc`)
    })
})
