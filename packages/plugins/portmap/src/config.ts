import { Effect, Schema } from "effect"
import { parseIp } from "@tscni/ip"
import type { PluginRequest } from "@tscni/skel"
import { type CniError, decodePluginKeys, unsupportedField } from "@tscni/spec"

const Port = Schema.Number.pipe(
  Schema.check(Schema.makeFilter((n: number) => (Number.isInteger(n) && n >= 1 && n <= 65535) || "a port from 1 to 65535"))
)

const Protocol = Schema.String.pipe(
  Schema.check(Schema.makeFilter((p: string) => ["tcp", "udp", "sctp"].includes(p.toLowerCase()) || "tcp, udp or sctp"))
)

/** A host address, or "" for every local address (as runtimes send it). */
const HostIP = Schema.String.pipe(
  Schema.check(Schema.makeFilter((ip: string) => ip === "" || parseIp(ip) !== undefined || "not an IP address"))
)

/** One hostPort mapping, as the `portMappings` capability carries it. */
const PortMapping = Schema.Struct({
  hostPort: Port,
  containerPort: Port,
  protocol: Schema.optionalKey(Protocol),
  hostIP: Schema.optionalKey(HostIP)
})

/** An nft match expression added to every DNAT rule (`conditionsV4`/`V6`). */
const Condition = Schema.String.pipe(
  Schema.check(Schema.makeFilter((c: string) => !/[;\n"]/.test(c) || "one nft match expression, without ';', quotes or newlines"))
)

/** The portmap plugin's own keys, as the reference plugin reads them. */
const PortmapKeys = Schema.Struct({
  snat: Schema.optionalKey(Schema.Boolean),
  masqAll: Schema.optionalKey(Schema.Boolean),
  markMasqBit: Schema.optionalKey(Schema.Number),
  externalSetMarkChain: Schema.optionalKey(Schema.String),
  conditionsV4: Schema.optionalKey(Schema.Array(Condition)),
  conditionsV6: Schema.optionalKey(Schema.Array(Condition)),
  backend: Schema.optionalKey(Schema.Literals(["nftables", "iptables", ""])),
  runtimeConfig: Schema.optionalKey(Schema.Struct({ portMappings: Schema.optionalKey(Schema.Array(PortMapping)) }))
})

export interface Mapping {
  readonly hostPort: number
  readonly containerPort: number
  readonly protocol: "tcp" | "udp" | "sctp"
  /** the host address to listen on; absent = every local address */
  readonly hostIP: string | undefined
}

export interface PortmapSettings {
  readonly network: string
  readonly mappings: ReadonlyArray<Mapping>
  readonly snat: boolean
  readonly masqAll: boolean
  readonly conditionsV4: ReadonlyArray<string>
  readonly conditionsV6: ReadonlyArray<string>
}

const protocolOf = (text: string | undefined): Mapping["protocol"] => {
  const lower = (text ?? "tcp").toLowerCase()
  return lower === "udp" ? "udp" : lower === "sctp" ? "sctp" : "tcp"
}

/** Decodes and checks the whole config (every problem is found before the first change). */
export const portmapSettings = (request: PluginRequest): Effect.Effect<PortmapSettings, CniError> =>
  Effect.gen(function*() {
    const keys = yield* decodePluginKeys(PortmapKeys)(request.raw)
    // markMasqBit and externalSetMarkChain only mean something to the iptables backend
    if (keys.backend === "iptables") return yield* unsupportedField("backend", "iptables")
    return {
      network: request.conf.name,
      mappings: (keys.runtimeConfig?.portMappings ?? []).map((mapping) => ({
        hostPort: mapping.hostPort,
        containerPort: mapping.containerPort,
        protocol: protocolOf(mapping.protocol),
        hostIP: mapping.hostIP === "" ? undefined : mapping.hostIP
      })),
      snat: keys.snat ?? true,
      masqAll: keys.masqAll ?? false,
      conditionsV4: keys.conditionsV4 ?? [],
      conditionsV6: keys.conditionsV6 ?? []
    }
  })
