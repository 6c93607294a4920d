import { Effect, Schema } from "effect"
import { Backend, type BackendError } from "@tscni/backend"
import { type CheckFailed, compensated, ensure, makeStep } from "@tscni/engine"
import { checkFailed, ignoreNotFound } from "./internal.ts"

/** Both ends of the pair; the peer is born directly in `peerNetns` (no move afterwards). */
export interface VethPairInput {
  readonly netns: string
  readonly name: string
  readonly peerNetns: string
  readonly peerName: string
  readonly mtu?: number
  readonly mac?: string
  readonly peerMac?: string
  /** alias for the `name` end (what GC reads to know whose veth it is) */
  readonly alias?: string
}

/** One end of a veth as created: enough to find it again and to report it in a Result. */
export const VethEnd = Schema.Struct({
  netns: Schema.String,
  name: Schema.String,
  index: Schema.Number,
  mac: Schema.String
})
export type VethEnd = typeof VethEnd.Type

/** Both ends of the pair created by vethPair (`netns`/`name` is the end undo deletes). */
export const VethPairHandle = Schema.Struct({ ...VethEnd.fields, peer: VethEnd })
export type VethPairHandle = typeof VethPairHandle.Type

const STEP = "vethPair"

/**
 * Creates a veth pair connecting two namespaces: the cable between a pod and the host.
 * Undo deletes the host end (which takes the peer with it); when the host end is already
 * gone it tries the peer, so a half-removed pair is still cleaned up.
 */
export const vethPair = makeStep<VethPairInput, VethPairHandle, BackendError, Backend>({
  name: STEP,
  handle: VethPairHandle,
  apply: (input) =>
    Effect.gen(function*() {
      const backend = yield* Backend
      const { alias, ...request } = input
      const { link, peer } = yield* backend.createVeth(request)
      if (alias !== undefined) {
        // part of this step: if the alias cannot be set, the pair goes again
        yield* compensated(STEP, backend.setLink(input.netns, input.name, { alias }), backend.deleteLink(input.netns, input.name))
      }
      return {
        netns: link.netns,
        name: link.name,
        index: link.index,
        mac: link.mac,
        peer: { netns: peer.netns, name: peer.name, index: peer.index, mac: peer.mac }
      }
    }),
  undo: (handle) =>
    Effect.gen(function*() {
      const backend = yield* Backend
      const deleted = yield* ignoreNotFound(backend.deleteLink(handle.netns, handle.name).pipe(Effect.as(true)))
      if (deleted === undefined) yield* ignoreNotFound(backend.deleteLink(handle.peer.netns, handle.peer.name))
    }),
  check: (handle) =>
    Effect.gen(function*() {
      const backend = yield* Backend
      const link = yield* ignoreNotFound(backend.getLink(handle.netns, handle.name))
      if (link === undefined) return yield* checkFailed(STEP, `${handle.name} is missing in ${handle.netns}`)
      const peer = yield* ignoreNotFound(backend.getLink(handle.peer.netns, handle.peer.name))
      if (peer === undefined) return yield* checkFailed(STEP, `${handle.peer.name} is missing in ${handle.peer.netns}`)
      yield* ensure(STEP, link.kind === "veth" && peer.kind === "veth", () =>
        `${handle.name} (${link.kind}) and ${handle.peer.name} (${peer.kind}) are not both veths`)
      yield* ensure(STEP, link.peerIndex === peer.index && peer.peerIndex === link.index, () =>
        `${handle.name} in ${handle.netns} and ${handle.peer.name} in ${handle.peer.netns} are not peers`)
    })
})

/**
 * CHECK of a pod interface against prevResult: it still has the MAC the result reported
 * (nothing to compare when the result gave none).
 */
export const checkReportedMac = (
  netns: string,
  ifname: string,
  reported: string | undefined
): Effect.Effect<void, BackendError | CheckFailed, Backend> =>
  Effect.gen(function*() {
    if (reported === undefined) return
    const link = yield* (yield* Backend).getLink(netns, ifname)
    if (link.mac.toLowerCase() !== reported.toLowerCase()) {
      return yield* checkFailed(STEP, `${ifname} has MAC ${link.mac}, prevResult says ${reported}`)
    }
  })

/**
 * A veth pair as DEL and CHECK locate it: by the names of both ends (undo deletes the first
 * by name, check looks both up and compares what it finds). An unknown peer namespace (DEL
 * with CNI_NETNS empty) names none: undo then has only the first end to delete.
 */
export const vethPairByName = (netns: string, name: string, peerNetns: string, peerName: string): VethPairHandle => ({
  netns,
  name,
  index: 0,
  mac: "",
  peer: { netns: peerNetns === "" ? "/nonexistent" : peerNetns, name: peerName, index: 0, mac: "" }
})
