import { Effect, Schema } from "effect"
import { Backend, type BackendError } from "@tscni/backend"
import { compensated, ensure, makeStep } from "@tscni/engine"
import { type CniError, invalidConfig } from "@tscni/spec"
import { contains, parseCidr, sameCidrText } from "@tscni/ip"

/**
 * The gateway address the bridge must carry for one pod network, and whether a conflicting
 * address may be replaced.
 */
export interface GatewayAddressInput {
  readonly netns: string
  readonly bridge: string
  /** the gateway with the pod network's prefix, e.g. `10.22.0.1/16` */
  readonly cidr: string
  /** replace another address of the same network instead of failing (`forceAddress`) */
  readonly force: boolean
  /** this pod's port on the bridge: any other port is another pod that relies on the gateway */
  readonly port: string
}

/**
 * Whether this pod added the gateway and what it displaced, so undo never takes away a
 * gateway other pods share and puts back what `forceAddress` replaced.
 */
export const GatewayAddressHandle = Schema.Struct({
  netns: Schema.String,
  bridge: Schema.String,
  cidr: Schema.String,
  /** false when the bridge already had it: shared by every pod, never removed by undo */
  created: Schema.Boolean,
  /** addresses `force` removed, put back by undo */
  replaced: Schema.Array(Schema.String),
  /** this pod's port on the bridge */
  port: Schema.String
})
export type GatewayAddressHandle = typeof GatewayAddressHandle.Type

const STEP = "gatewayAddress"

/** Two CIDRs overlap when either network contains the other's address. */
const overlaps = (a: string, b: string): boolean => {
  const x = parseCidr(a)
  const y = parseCidr(b)
  return x !== undefined && y !== undefined && (contains(x, y.ip) || contains(y, x.ip))
}

/** Whether a port other than this pod's is on the bridge (a bridge gone has none). */
const otherPorts = (handle: GatewayAddressHandle) =>
  Effect.gen(function*() {
    const backend = yield* Backend
    const ports = yield* backend.listBridgePorts(handle.netns, handle.bridge).pipe(
      Effect.catchIf((error) => error.reason === "NotFound", () => Effect.succeed([]))
    )
    return ports.some((link) => link.name !== handle.port)
  })

/**
 * Gives the bridge the pod network's gateway address, as the reference bridge plugin does:
 * an existing equal address is adopted; a different address of the same network is an
 * error unless `forceAddress`, which replaces it (and undo restores it).
 */
export const gatewayAddress = makeStep<GatewayAddressInput, GatewayAddressHandle, BackendError | CniError, Backend>({
  name: STEP,
  handle: GatewayAddressHandle,
  apply: (input) =>
    Effect.gen(function*() {
      const backend = yield* Backend
      const present = (yield* backend.listAddresses(input.netns, input.bridge)).map((address) => address.cidr)
      const base = { netns: input.netns, bridge: input.bridge, cidr: input.cidr, port: input.port }
      if (present.some((cidr) => sameCidrText(cidr, input.cidr))) return { ...base, created: false, replaced: [] }
      const conflicting = present.filter((cidr) => overlaps(cidr, input.cidr))
      if (conflicting.length > 0 && !input.force) {
        return yield* invalidConfig(
          "forceAddress",
          `bridge ${input.bridge} already has ${conflicting.join(", ")}, which differs from ${input.cidr}; set forceAddress to replace it`
        )
      }
      // replacing is one change: whatever fails on the way, the replaced addresses come back
      const putBack = Effect.gen(function*() {
        const now = (yield* backend.listAddresses(input.netns, input.bridge)).map((address) => address.cidr)
        for (const cidr of conflicting) if (!now.includes(cidr)) yield* backend.addAddress(input.netns, input.bridge, cidr)
      })
      const created = yield* Effect.gen(function*() {
        for (const cidr of conflicting) yield* backend.deleteAddress(input.netns, input.bridge, cidr)
        // the gateway is ours by construction: no duplicate address detection (which would
        // leave an IPv6 gateway unusable for the pod's first seconds)
        return yield* backend.addAddress(input.netns, input.bridge, input.cidr, { noDad: true }).pipe(
          Effect.as(true),
          // another pod's ADD, running at the same time, added it first: adopt it
          Effect.catchIf((error) => error.reason === "AlreadyExists" && conflicting.length === 0, () => Effect.succeed(false))
        )
      }).pipe((effect) => compensated(STEP, effect, putBack))
      return { ...base, created, replaced: conflicting }
    }),
  // Another pod's ADD, running at the same time, may have adopted the gateway this one
  // added: while any other port is on the bridge, the gateway (and what it replaced) stays.
  // A pod attaches before it looks for the gateway, so looking again after removing it
  // closes the window: a port that came meanwhile gets the gateway back.
  undo: (handle) =>
    Effect.gen(function*() {
      if (!handle.created) return
      const backend = yield* Backend
      if (yield* otherPorts(handle)) return
      const present = yield* backend.listAddresses(handle.netns, handle.bridge).pipe(
        Effect.catchIf((error) => error.reason === "NotFound", () => Effect.succeed(undefined))
      )
      if (present === undefined) return // the bridge is gone, and its addresses with it
      if (present.some((address) => sameCidrText(address.cidr, handle.cidr))) yield* backend.deleteAddress(handle.netns, handle.bridge, handle.cidr)
      if (yield* otherPorts(handle)) {
        yield* backend.addAddress(handle.netns, handle.bridge, handle.cidr, { noDad: true }).pipe(
          Effect.catchIf((error) => error.reason === "AlreadyExists", () => Effect.void)
        )
        return
      }
      for (const cidr of handle.replaced) {
        if (!present.some((address) => address.cidr === cidr)) yield* backend.addAddress(handle.netns, handle.bridge, cidr)
      }
    }),
  check: (handle) =>
    Effect.gen(function*() {
      const present = (yield* (yield* Backend).listAddresses(handle.netns, handle.bridge)).map((address) => address.cidr)
      yield* ensure(STEP, present.some((cidr) => sameCidrText(cidr, handle.cidr)), () => `bridge ${handle.bridge} lacks its gateway ${handle.cidr}`)
    })
})
