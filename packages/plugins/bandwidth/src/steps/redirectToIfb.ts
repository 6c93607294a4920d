import { Effect, Schema } from "effect"
import { Backend, type BackendError } from "@tscni/backend"
import { ensure, makeStep } from "@tscni/engine"
import { ignoreNotFound } from "@tscni/steps"

/** Which link's received traffic goes to which ifb. */
export interface RedirectToIfbInput {
  readonly netns: string
  /** the link whose received traffic is taken */
  readonly link: string
  /** the ifb it is sent out of */
  readonly ifb: string
}

/** Identifies the redirect by its two ends, so undo removes exactly ours and no other filter. */
export const RedirectToIfbHandle = Schema.Struct({ netns: Schema.String, link: Schema.String, ifb: Schema.String })
export type RedirectToIfbHandle = typeof RedirectToIfbHandle.Type

const STEP = "redirectToIfb"

const isOurs = (handle: RedirectToIfbHandle) => (r: { readonly link: string; readonly toLink: string }) =>
  r.link === handle.link && r.toLink === handle.ifb

/**
 * Redirects every packet a link receives to the egress of an ifb (u32 match-all, mirred
 * egress redirect), where the ifb's tbf shapes it. Undo removes exactly that redirect,
 * when it is still there.
 */
export const redirectToIfb = makeStep<RedirectToIfbInput, RedirectToIfbHandle, BackendError, Backend>({
  name: STEP,
  handle: RedirectToIfbHandle,
  apply: (input) =>
    Effect.gen(function*() {
      yield* (yield* Backend).addRedirect(input.netns, { link: input.link, toLink: input.ifb })
      return { netns: input.netns, link: input.link, ifb: input.ifb }
    }),
  undo: (handle) =>
    Effect.gen(function*() {
      const backend = yield* Backend
      const redirects = yield* ignoreNotFound(backend.listRedirects(handle.netns, handle.link))
      if (redirects === undefined || !redirects.some(isOurs(handle))) return
      yield* ignoreNotFound(backend.deleteRedirect(handle.netns, { link: handle.link, toLink: handle.ifb }))
    }),
  check: (handle) =>
    Effect.gen(function*() {
      const redirects = yield* (yield* Backend).listRedirects(handle.netns, handle.link)
      yield* ensure(STEP, redirects.some(isOurs(handle)), () => `${handle.link} does not redirect its ingress to ${handle.ifb}`)
    })
})
