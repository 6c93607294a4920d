import { Effect, Schema } from "effect"
import { interfaceNameProblem } from "@tscni/backend"
import { type CniError, decodePluginKeys, IntegerInRange, invalidConfig, unsupportedField } from "@tscni/spec"
import { InterfaceMac, macFromCniArgs, type PluginRequest } from "@tscni/skel"

const InterfaceName = Schema.String.pipe(
  Schema.check(Schema.makeFilter((name: string) => {
    const problem = interfaceNameProblem(name)
    return problem === undefined || `not an interface name: '${name}' ${problem}`
  }))
)

/** The bridge plugin's own keys, as the reference bridge plugin reads them. */
const BridgeKeys = Schema.Struct({
  bridge: Schema.optionalKey(InterfaceName),
  isGateway: Schema.optionalKey(Schema.Boolean),
  isDefaultGateway: Schema.optionalKey(Schema.Boolean),
  forceAddress: Schema.optionalKey(Schema.Boolean),
  ipMasq: Schema.optionalKey(Schema.Boolean),
  ipMasqBackend: Schema.optionalKey(Schema.Literals(["nftables", "iptables"])),
  mtu: Schema.optionalKey(IntegerInRange(68, 65535)),
  hairpinMode: Schema.optionalKey(Schema.Boolean),
  promiscMode: Schema.optionalKey(Schema.Boolean),
  vlan: Schema.optionalKey(IntegerInRange(0, 4094)),
  preserveDefaultVlan: Schema.optionalKey(Schema.Boolean),
  vlanTrunk: Schema.optionalKey(Schema.Array(Schema.Unknown)),
  macspoofchk: Schema.optionalKey(Schema.Boolean),
  enabledad: Schema.optionalKey(Schema.Boolean),
  disableContainerInterface: Schema.optionalKey(Schema.Boolean),
  portIsolation: Schema.optionalKey(Schema.Boolean),
  args: Schema.optionalKey(Schema.Struct({ cni: Schema.optionalKey(Schema.Struct({ mac: Schema.optionalKey(InterfaceMac) })) })),
  runtimeConfig: Schema.optionalKey(Schema.Struct({ mac: Schema.optionalKey(InterfaceMac) }))
})

/** Everything the bridge plugin decided from its config and request, before any side effect. */
export interface BridgeSettings {
  readonly network: string
  readonly bridge: string
  readonly isGateway: boolean
  readonly isDefaultGateway: boolean
  readonly forceAddress: boolean
  readonly ipMasq: boolean
  /** where the masquerade rules go: tscni's nftables table, or its iptables chain */
  readonly ipMasqBackend: "nftables" | "iptables"
  readonly mtu: number | undefined
  readonly hairpinMode: boolean
  readonly promiscMode: boolean
  readonly vlan: number | undefined
  readonly preserveDefaultVlan: boolean
  readonly macspoofchk: boolean
  readonly enabledad: boolean
  readonly disableContainerInterface: boolean
  readonly portIsolation: boolean
  /** the container interface's MAC: runtimeConfig.mac, args.cni.mac or CNI_ARGS MAC=, in that order */
  readonly mac: string | undefined
  /** `ipam.type`, when the network has IPAM */
  readonly ipamType: string | undefined
}

const DEFAULT_BRIDGE = "cni0"

/** Decodes and checks the whole config: every problem is found here, before the first change. */
export const bridgeSettings = (request: PluginRequest): Effect.Effect<BridgeSettings, CniError> =>
  Effect.gen(function*() {
    const keys = yield* decodePluginKeys(BridgeKeys)(request.raw)
    if (keys.vlanTrunk !== undefined && keys.vlanTrunk.length > 0) return yield* unsupportedField("vlanTrunk", keys.vlanTrunk)
    const ipamType = request.conf.ipam?.type
    const disableContainerInterface = keys.disableContainerInterface ?? false
    if (disableContainerInterface && ipamType !== undefined && ipamType !== "") {
      return yield* invalidConfig("disableContainerInterface", "cannot be used with IPAM (the interface stays down)")
    }
    const isDefaultGateway = keys.isDefaultGateway ?? false
    const mac = keys.runtimeConfig?.mac ?? keys.args?.cni?.mac ?? (yield* macFromCniArgs(request.env.args))
    return {
      network: request.conf.name,
      bridge: keys.bridge ?? DEFAULT_BRIDGE,
      // a default gateway implies being a gateway, as in the reference plugin
      isGateway: (keys.isGateway ?? false) || isDefaultGateway,
      isDefaultGateway,
      forceAddress: keys.forceAddress ?? false,
      ipMasq: keys.ipMasq ?? false,
      ipMasqBackend: keys.ipMasqBackend ?? "nftables",
      mtu: keys.mtu,
      hairpinMode: keys.hairpinMode ?? false,
      promiscMode: keys.promiscMode ?? false,
      vlan: keys.vlan === 0 ? undefined : keys.vlan,
      preserveDefaultVlan: keys.preserveDefaultVlan ?? true,
      macspoofchk: keys.macspoofchk ?? false,
      enabledad: keys.enabledad ?? false,
      disableContainerInterface,
      portIsolation: keys.portIsolation ?? false,
      mac: mac?.toLowerCase(),
      ipamType: ipamType === "" ? undefined : ipamType
    }
  })
