import { Effect, Schema } from "effect"
import { Backend, BackendError, type LinkInfo } from "@tscni/backend"
import { compensated, ensure, makeStep } from "@tscni/engine"
import { checkFailed, ignoreNotFound } from "./internal.ts"

/** The bridge every pod of a network is plugged into, and how to create it if absent. */
export interface EnsureBridgeInput {
  readonly netns: string
  readonly name: string
  readonly mtu?: number
  readonly mac?: string
  /** alias put on a bridge this step creates (marks it as tscni's) */
  readonly alias?: string
  /** create it with VLAN filtering on (ports then carry VLANs) */
  readonly vlanFiltering?: boolean
}

/** `created` says whether this step made the bridge (only then may undo remove it). */
export const EnsureBridgeHandle = Schema.Struct({
  netns: Schema.String,
  name: Schema.String,
  index: Schema.Number,
  /** the bridge's MAC when the step ran, for the result */
  mac: Schema.String,
  created: Schema.Boolean
})
export type EnsureBridgeHandle = typeof EnsureBridgeHandle.Type

const STEP = "ensureBridge"

/**
 * Deletes the bridge `name` when `isOurs` says it is ours and no link has it as master
 * any more — or only `lastPort`, which then goes with it in one kernel batch (one
 * unregister instead of two: what a pod's DEL saves when its veth is the last port). A
 * bridge that is absent, not a bridge, or not ours is left alone.
 */
export const deleteBridgeIfPortless = (
  netns: string,
  name: string,
  isOurs: (bridge: LinkInfo) => boolean,
  lastPort?: string
): Effect.Effect<void, BackendError, Backend> =>
  Effect.gen(function*() {
    const backend = yield* Backend
    const bridge = yield* ignoreNotFound(backend.getLink(netns, name))
    if (bridge === undefined || bridge.kind !== "bridge" || !isOurs(bridge)) return
    // the bridge's ports only (the kernel filters), never every link of the host
    const ports = (yield* backend.listBridgePorts(netns, name)).map((port) => port.name)
    if (ports.length === 0) yield* ignoreNotFound(backend.deleteLink(netns, name))
    else if (ports.length === 1 && ports[0] === lastPort) yield* ignoreNotFound(backend.deleteLinksTogether(netns, [lastPort, name]))
  })

/**
 * Makes sure the network's bridge exists and is a bridge, creating it (up) on the first
 * pod. Shared by every pod, so undo removes it only if this step created it and no port
 * is left on it; a bridge that was already there is adopted and never removed.
 */
export const ensureBridge = makeStep<EnsureBridgeInput, EnsureBridgeHandle, BackendError, Backend>({
  name: STEP,
  handle: EnsureBridgeHandle,
  apply: (input) =>
    Effect.gen(function*() {
      const backend = yield* Backend
      const adopt = (existing: LinkInfo) =>
        existing.kind === "bridge"
          ? Effect.succeed({ netns: input.netns, name: input.name, index: existing.index, mac: existing.mac, created: false })
          : Effect.fail(
            new BackendError({
              operation: "createLink",
              reason: "AlreadyExists",
              message: `${input.name} exists in ${input.netns} and is a ${existing.kind}, not a bridge`
            })
          )
      const existing = yield* ignoreNotFound(backend.getLink(input.netns, input.name))
      if (existing !== undefined) return yield* adopt(existing)
      const created = yield* backend.createLink({
        netns: input.netns,
        name: input.name,
        kind: "bridge",
        ...(input.mtu === undefined ? {} : { mtu: input.mtu }),
        ...(input.mac === undefined ? {} : { mac: input.mac }),
        ...(input.alias === undefined ? {} : { alias: input.alias }),
        ...(input.vlanFiltering === true ? { vlanFiltering: true } : {})
      }).pipe(
        Effect.map((link) => ({ link, raced: false })),
        // a concurrent ADD of another pod created it first: adopt theirs
        Effect.catchIf(
          (error) => error.reason === "AlreadyExists",
          () => backend.getLink(input.netns, input.name).pipe(Effect.map((link) => ({ link, raced: true })))
        )
      )
      if (created.raced) return yield* adopt(created.link)
      // Bringing it up is part of this step: if that fails, remove what was just created.
      // Setting its own MAC pins it: else a bridge takes the lowest MAC of its ports, which
      // changes as pods come and go (the reference plugin does the same).
      yield* backend.setLink(input.netns, input.name, { up: true, mac: created.link.mac }).pipe(
        (effect) => compensated(STEP, effect, backend.deleteLink(input.netns, input.name))
      )
      return { netns: input.netns, name: input.name, index: created.link.index, mac: created.link.mac, created: true }
    }),
  undo: (handle) =>
    handle.created
      // not if gone already, or replaced by something that is not the bridge we made
      ? deleteBridgeIfPortless(handle.netns, handle.name, (bridge) => bridge.index === handle.index)
      : Effect.void,
  check: (handle) =>
    Effect.gen(function*() {
      const backend = yield* Backend
      const bridge = yield* ignoreNotFound(backend.getLink(handle.netns, handle.name))
      if (bridge === undefined) return yield* checkFailed(STEP, `bridge ${handle.name} is missing in ${handle.netns}`)
      yield* ensure(STEP, bridge.kind === "bridge", () => `${handle.name} is a ${bridge.kind}, not a bridge`)
    })
})
