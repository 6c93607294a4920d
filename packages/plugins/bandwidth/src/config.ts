import { Effect, Schema } from "effect"
import { type CniError, decodePluginKeys, invalidConfig, unsupportedField, withGoFieldNames, withRuntimeCapability } from "@tscni/spec"
import type { PluginRequest } from "@tscni/skel"
import { type Limit, limitBytes, MAX_U32 } from "./tbf.ts"

/** A rate or burst: a whole, non-negative number JSON can carry exactly. */
const Amount = Schema.Number.pipe(
  Schema.check(
    Schema.makeFilter((n: number) =>
      (Number.isSafeInteger(n) && n >= 0) || "a non-negative integer (bits per second for a rate, bits for a burst)"
    )
  )
)

/** The `bandwidth` entry of CONVENTIONS.md, in the config or in runtimeConfig; null is 0, as in the reference. */
const BandwidthEntry = Schema.Struct({
  ingressRate: Schema.optionalKey(Schema.NullOr(Amount)),
  ingressBurst: Schema.optionalKey(Schema.NullOr(Amount)),
  egressRate: Schema.optionalKey(Schema.NullOr(Amount)),
  egressBurst: Schema.optionalKey(Schema.NullOr(Amount)),
  // later reference plugins shape only (or all but) some subnets with htb: not supported
  shapedSubnets: Schema.optionalKey(Schema.NullOr(Schema.Array(Schema.String))),
  unshapedSubnets: Schema.optionalKey(Schema.NullOr(Schema.Array(Schema.String)))
})
type BandwidthEntry = typeof BandwidthEntry.Type

const BandwidthKeys = Schema.Struct({
  ...BandwidthEntry.fields,
  runtimeConfig: Schema.optionalKey(Schema.Struct({ bandwidth: Schema.optionalKey(BandwidthEntry) }))
})

/** Everything the bandwidth plugin decided from its config, before it looks at the kernel. */
export interface BandwidthSettings {
  readonly network: string
  /** towards the pod: a tbf on the host veth */
  readonly ingress: Limit | undefined
  /** from the pod: the host veth's ingress redirected to an ifb with a tbf */
  readonly egress: Limit | undefined
  /** where the limits came from, to name fields in errors: `` or `runtimeConfig.bandwidth.` */
  readonly source: string
}

/** One direction: both zero (or absent) is no limit; a rate needs its burst and the reverse. */
const direction = (entry: BandwidthEntry, source: string, name: "ingress" | "egress"): Effect.Effect<Limit | undefined, CniError> => {
  const rate = entry[`${name}Rate`] ?? 0
  const burst = entry[`${name}Burst`] ?? 0
  const rateField = `${source}${name}Rate`
  const burstField = `${source}${name}Burst`
  if (rate === 0 && burst === 0) return Effect.succeed(undefined)
  if (burst === 0) return Effect.fail(invalidConfig(burstField, `must be set (and positive) when ${rateField} is set`))
  if (rate === 0) return Effect.fail(invalidConfig(rateField, `must be set (and positive) when ${burstField} is set`))
  // the kernel takes whole bytes per second; a rate under 8 bit/s is no rate at all
  if (rate < 8) return Effect.fail(invalidConfig(rateField, `${rate} bit/s is below the smallest rate the kernel can keep (8 bit/s)`))
  if (Math.floor(burst / 8) >= MAX_U32) return Effect.fail(invalidConfig(burstField, `${burst} bits is more than the kernel's 4 GiB bucket`))
  const limit = { rate, burst }
  if (limitBytes(limit) > MAX_U32) {
    return Effect.fail(
      invalidConfig(rateField, `${rate} bit/s with a ${burst}-bit burst needs a queue of more than the kernel's 4 GiB (25 ms at the rate plus the burst)`)
    )
  }
  return Effect.succeed(limit)
}

const ENTRY_KEYS = Object.keys(BandwidthEntry.fields)

/**
 * Decodes and checks the limits. As in the reference plugin, the config's own keys win as a
 * whole entry when any of them is present; otherwise runtimeConfig.bandwidth (the
 * `bandwidth` capability, what Kubernetes' pod annotations become) applies.
 */
export const bandwidthSettings = (request: PluginRequest): Effect.Effect<BandwidthSettings, CniError> =>
  Effect.gen(function*() {
    // containerd sends the limits with Go's field names (IngressRate, …): read as Go does
    const raw = withRuntimeCapability(request.raw, "bandwidth", (entry) => withGoFieldNames(entry, Object.keys(BandwidthEntry.fields)))
    const keys = yield* decodePluginKeys(BandwidthKeys)(raw)
    const hasOwnEntry = ENTRY_KEYS.some((key) => key in request.raw)
    const fromRuntime = hasOwnEntry ? undefined : keys.runtimeConfig?.bandwidth
    const entry = fromRuntime ?? keys
    const source = fromRuntime === undefined ? "" : "runtimeConfig.bandwidth."
    for (const field of ["shapedSubnets", "unshapedSubnets"] as const) {
      const subnets = entry[field]
      if (subnets !== undefined && subnets !== null && subnets.length > 0) return yield* unsupportedField(`${source}${field}`, subnets)
    }
    return {
      network: request.conf.name,
      ingress: yield* direction(entry, source, "ingress"),
      egress: yield* direction(entry, source, "egress"),
      source
    }
  })

/** Nothing to shape: ADD passes prevResult through without touching the kernel. */
export const shapesNothing = (settings: BandwidthSettings): boolean => settings.ingress === undefined && settings.egress === undefined
