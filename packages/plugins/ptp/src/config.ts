import { Effect, Schema } from "effect"
import { type CniError, decodePluginKeys, invalidConfig } from "@tscni/spec"
import type { PluginRequest } from "@tscni/skel"

/** `mtu`: as in the reference, 0 (Go's zero value) means "not set": the kernel's default. */
const Mtu = Schema.Number.pipe(
  Schema.check(Schema.makeFilter((n: number) =>
    (Number.isInteger(n) && (n === 0 || (n >= 68 && n <= 65535))) || "an integer from 68 to 65535 (or 0: the kernel's default)"
  ))
)

/** The ptp plugin's own keys, exactly the reference ptp plugin's. */
const PtpKeys = Schema.Struct({
  ipMasq: Schema.optionalKey(Schema.Boolean),
  ipMasqBackend: Schema.optionalKey(Schema.Literals(["nftables", "iptables"])),
  mtu: Schema.optionalKey(Mtu)
})

/** Everything the ptp plugin decided from its config, before any side effect. */
export interface PtpSettings {
  readonly network: string
  readonly ipMasq: boolean
  /** where the masquerade goes: tscni's nftables table, or an iptables chain of the pod's */
  readonly ipMasqBackend: "nftables" | "iptables"
  /** both veth ends' MTU; undefined: the kernel's default */
  readonly mtu: number | undefined
  /** `ipam.type`: ptp routes the pod by the addresses IPAM gives it, so it needs one */
  readonly ipamType: string
}

/** Decodes and checks the whole config: every problem is found here, before the first change. */
export const ptpSettings = (request: PluginRequest): Effect.Effect<PtpSettings, CniError> =>
  Effect.gen(function*() {
    const keys = yield* decodePluginKeys(PtpKeys)(request.raw)
    const ipamType = request.conf.ipam?.type
    if (ipamType === undefined || ipamType === "") {
      return yield* invalidConfig("ipam.type", "ptp needs an IPAM plugin: the pod is routed by the addresses it gives")
    }
    return {
      network: request.conf.name,
      ipMasq: keys.ipMasq ?? false,
      ipMasqBackend: keys.ipMasqBackend ?? "nftables",
      mtu: keys.mtu === 0 ? undefined : keys.mtu,
      ipamType
    }
  })
