import { Effect, Schema } from "effect"
import { Backend, type BackendError, type LinkInfo } from "@tscni/backend"
import { ensure, makeStep } from "@tscni/engine"
import { checkFailed, ignoreNotFound } from "./internal.ts"

/** The link properties a plugin may tune; absent ones are left alone. */
export const LinkOptions = Schema.Struct({
  mtu: Schema.optionalKey(Schema.Number),
  mac: Schema.optionalKey(Schema.String),
  txqlen: Schema.optionalKey(Schema.Number),
  promisc: Schema.optionalKey(Schema.Boolean),
  allmulti: Schema.optionalKey(Schema.Boolean)
})
export type LinkOptions = typeof LinkOptions.Type

/** The link to tune (in its namespace) and the properties to change on it. */
export interface SetLinkOptionsInput {
  readonly netns: string
  readonly link: string
  readonly options: LinkOptions
  /**
   * false for a switch other pods rely on once it is on (a shared bridge's promiscuous
   * mode): undo then leaves it, as a concurrent ADD may rely on it already (default true)
   */
  readonly restoreOnUndo?: boolean
}

/** What was set and what it replaced, so undo can put every property back. */
export const SetLinkOptionsHandle = Schema.Struct({
  netns: Schema.String,
  link: Schema.String,
  applied: LinkOptions,
  previous: LinkOptions
})
export type SetLinkOptionsHandle = typeof SetLinkOptionsHandle.Type

const STEP = "setLinkOptions"
const KEYS = Object.keys(LinkOptions.fields) as ReadonlyArray<keyof LinkOptions>

/** The link's current value of each property `options` sets: what undo puts back. */
export const previousLinkOptions = (link: LinkInfo, options: LinkOptions): LinkOptions => {
  const previous: Record<string, unknown> = {}
  for (const key of KEYS) if (options[key] !== undefined) previous[key] = link[key]
  return previous as LinkOptions
}

const differences = (link: LinkInfo, wanted: LinkOptions): Array<string> =>
  KEYS.filter((key) => wanted[key] !== undefined && String(wanted[key]).toLowerCase() !== String(link[key]).toLowerCase())
    .map((key) => `${key} is ${String(link[key])}, expected ${String(wanted[key])}`)

/**
 * Sets mtu, mac, txqlen, promisc or allmulti on a link (a bridge in promiscuous mode, a
 * pod interface tuned by the tuning plugin), remembering the previous values for undo.
 */
export const setLinkOptions = makeStep<SetLinkOptionsInput, SetLinkOptionsHandle, BackendError, Backend>({
  name: STEP,
  handle: SetLinkOptionsHandle,
  apply: (input) =>
    Effect.gen(function*() {
      const backend = yield* Backend
      // nothing to put back: previous stays empty
      const previous = input.restoreOnUndo === false ? {} : previousLinkOptions(yield* backend.getLink(input.netns, input.link), input.options)
      yield* backend.setLink(input.netns, input.link, input.options)
      return { netns: input.netns, link: input.link, applied: input.options, previous }
    }),
  undo: (handle) =>
    Effect.gen(function*() {
      if (Object.keys(handle.previous).length === 0) return
      yield* ignoreNotFound((yield* Backend).setLink(handle.netns, handle.link, handle.previous))
    }),
  check: (handle) =>
    Effect.gen(function*() {
      const link = yield* ignoreNotFound((yield* Backend).getLink(handle.netns, handle.link))
      if (link === undefined) return yield* checkFailed(STEP, `${handle.link} is missing in ${handle.netns}`)
      const wrong = differences(link, handle.applied)
      yield* ensure(STEP, wrong.length === 0, () => `${handle.link}: ${wrong.join("; ")}`)
    })
})
