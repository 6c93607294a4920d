import { Effect, Schema } from "effect"
import { Backend, type BackendError, type QdiscInfo, TbfOptions } from "@tscni/backend"
import { ensure, makeStep } from "@tscni/engine"
import { ignoreNotFound } from "@tscni/steps"
import { describeTbf, tbfMatches } from "../tbf.ts"

/** The link to shape and its limits: the host veth for ingress, the ifb for egress. */
export interface AddTbfInput {
  readonly netns: string
  readonly link: string
  readonly tbf: TbfOptions
}

/**
 * Keeps the limits too, so undo only removes a root tbf still at our rate and check can
 * compare what the kernel reports.
 */
export const AddTbfHandle = Schema.Struct({ netns: Schema.String, link: Schema.String, tbf: TbfOptions })
export type AddTbfHandle = typeof AddTbfHandle.Type

const STEP = "addTbf"

/** The handle tscni's tbf gets (`1:`), as the reference plugin's. */
const TBF_HANDLE = "1:"

/** The root qdisc when it is a tbf tscni could have added: handle 1: and the handle's rate. */
const oursAtRoot = (qdiscs: ReadonlyArray<QdiscInfo>, handle: AddTbfHandle): QdiscInfo | undefined =>
  qdiscs.find((q) => q.parent === "root" && q.kind === "tbf" && q.handle === TBF_HANDLE && q.tbf?.rate === handle.tbf.rate)

/**
 * Shapes everything a link sends with a token bucket filter at its root. Undo removes the
 * root qdisc only while it still looks like ours (a tbf with handle 1: at our rate), so a
 * DEL that rebuilt this handle never removes someone else's shaping.
 */
export const addTbf = makeStep<AddTbfInput, AddTbfHandle, BackendError, Backend>({
  name: STEP,
  handle: AddTbfHandle,
  apply: (input) =>
    Effect.gen(function*() {
      yield* (yield* Backend).addQdisc(input.netns, { link: input.link, kind: "tbf", parent: "root", tbf: input.tbf })
      return { netns: input.netns, link: input.link, tbf: input.tbf }
    }),
  undo: (handle) =>
    Effect.gen(function*() {
      const backend = yield* Backend
      const qdiscs = yield* ignoreNotFound(backend.listQdiscs(handle.netns, handle.link))
      if (qdiscs === undefined || oursAtRoot(qdiscs, handle) === undefined) return
      yield* ignoreNotFound(backend.deleteQdisc(handle.netns, handle.link, "root"))
    }),
  check: (handle) =>
    Effect.gen(function*() {
      const qdiscs = yield* (yield* Backend).listQdiscs(handle.netns, handle.link)
      const root = qdiscs.find((q) => q.parent === "root")
      yield* ensure(STEP, root?.kind === "tbf" && root.tbf !== undefined, () => `${handle.link} has no tbf at its root (expected ${describeTbf(handle.tbf)})`)
      const found = root?.tbf
      yield* ensure(
        STEP,
        found !== undefined && tbfMatches(found, handle.tbf),
        () => `${handle.link} is shaped to ${found === undefined ? "?" : describeTbf(found)}, expected ${describeTbf(handle.tbf)}`
      )
    })
})
