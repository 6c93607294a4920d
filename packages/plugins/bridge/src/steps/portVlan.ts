import { Effect, Schema } from "effect"
import { Backend, type BackendError } from "@tscni/backend"
import { compensated, ensure, makeStep } from "@tscni/engine"

/** The pod's bridge port and the VLAN it joins (`vlan` in the config). */
export interface PortVlanInput {
  readonly netns: string
  /** the pod's bridge port (host veth) */
  readonly link: string
  readonly vid: number
  /** keep the bridge's default VLAN 1 on the port as well */
  readonly preserveDefaultVlan: boolean
}

/** The VLAN set and whether the default VLAN was dropped, so undo can restore the port as it was. */
export const PortVlanHandle = Schema.Struct({
  netns: Schema.String,
  link: Schema.String,
  vid: Schema.Number,
  /** the port had VLAN 1 and this step removed it */
  removedDefault: Schema.Boolean
})
export type PortVlanHandle = typeof PortVlanHandle.Type

const DEFAULT_VLAN = 1
const STEP = "portVlan"

/**
 * Puts the pod's port on its VLAN (access port: PVID, untagged), as the reference's `vlan`
 * does, and drops the default VLAN unless `preserveDefaultVlan`. Needs a bridge with VLAN
 * filtering; kernels without it answer Unsupported and ADD rolls back.
 */
export const portVlan = makeStep<PortVlanInput, PortVlanHandle, BackendError, Backend>({
  name: STEP,
  handle: PortVlanHandle,
  apply: (input) =>
    Effect.gen(function*() {
      const backend = yield* Backend
      yield* backend.addBridgeVlan(input.netns, input.link, { vid: input.vid, pvid: true, untagged: true })
      // whatever fails from here, the VLAN just added goes again
      return yield* compensated(STEP, Effect.gen(function*() {
        const hadDefault = (yield* backend.listBridgeVlans(input.netns, input.link)).some((v) => v.vid === DEFAULT_VLAN)
        const removedDefault = !input.preserveDefaultVlan && input.vid !== DEFAULT_VLAN && hadDefault
        if (removedDefault) yield* backend.deleteBridgeVlan(input.netns, input.link, DEFAULT_VLAN)
        return { netns: input.netns, link: input.link, vid: input.vid, removedDefault }
      }), backend.deleteBridgeVlan(input.netns, input.link, input.vid))
    }),
  undo: (handle) =>
    Effect.gen(function*() {
      const backend = yield* Backend
      const vlans = yield* backend.listBridgeVlans(handle.netns, handle.link).pipe(
        Effect.catchIf((error) => error.reason === "NotFound", () => Effect.succeed(undefined))
      )
      if (vlans === undefined) return // the port is gone, and its VLANs with it
      if (handle.removedDefault && !vlans.some((v) => v.vid === DEFAULT_VLAN)) {
        yield* backend.addBridgeVlan(handle.netns, handle.link, { vid: DEFAULT_VLAN, pvid: true, untagged: true })
      }
      if (vlans.some((v) => v.vid === handle.vid)) yield* backend.deleteBridgeVlan(handle.netns, handle.link, handle.vid)
    }),
  check: (handle) =>
    Effect.gen(function*() {
      const vlans = yield* (yield* Backend).listBridgeVlans(handle.netns, handle.link)
      yield* ensure(STEP, vlans.some((v) => v.vid === handle.vid && v.pvid), () => `${handle.link} is not on VLAN ${handle.vid}`)
    })
})
