import { Effect, Schema } from "effect"
import { parseIp } from "@tscni/ip"
import type { PluginRequest } from "@tscni/skel"
import { type CniError, decodePluginKeys, eachWithGoFieldNames, IntegerInRange, invalidConfig, withRuntimeCapability } from "@tscni/spec"

const Port = IntegerInRange(1, 65535)

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

const PORT_MAPPING_FIELDS = Object.keys(PortMapping.fields)

/**
 * A match added to every DNAT rule (`conditionsV4`/`V6`): an nft match expression for the
 * nftables backend, iptables arguments (`"-s"`, `"192.0.2.0/24"`, or `"-s 192.0.2.0/24"`)
 * for the iptables backend.
 */
const Condition = Schema.String.pipe(
  Schema.check(Schema.makeFilter((c: string) => !/[;\n"]/.test(c) || "one match expression, without ';', quotes or newlines"))
)

/** `externalSetMarkChain`: an existing chain of the nat table (e.g. Kubernetes' KUBE-MARK-MASQ). */
const ChainName = Schema.String.pipe(
  Schema.check(Schema.makeFilter((c: string) => /^[A-Za-z0-9][A-Za-z0-9_.:-]{0,27}$/.test(c) || "an iptables chain name (1-28 characters)"))
)

/** The portmap plugin's own keys, as the reference plugin reads them. */
const PortmapKeys = Schema.Struct({
  snat: Schema.optionalKey(Schema.Boolean),
  masqAll: Schema.optionalKey(Schema.Boolean),
  markMasqBit: Schema.optionalKey(IntegerInRange(0, 31)),
  externalSetMarkChain: Schema.optionalKey(ChainName),
  conditionsV4: Schema.optionalKey(Schema.Array(Condition)),
  conditionsV6: Schema.optionalKey(Schema.Array(Condition)),
  backend: Schema.optionalKey(Schema.Literals(["nftables", "iptables", ""])),
  // containerd sends `null` for a pod without ports (a nil Go slice)
  runtimeConfig: Schema.optionalKey(Schema.Struct({ portMappings: Schema.optionalKey(Schema.NullOr(Schema.Array(PortMapping))) }))
})

/**
 * One hostPort mapping from runtimeConfig.portMappings, normalised (protocol lower case,
 * "" hostIP as absent): what the rules are built from.
 */
export interface Mapping {
  readonly hostPort: number
  readonly containerPort: number
  readonly protocol: "tcp" | "udp" | "sctp"
  /** the host address to listen on; absent = every local address */
  readonly hostIP: string | undefined
}

/** The reference's default mark bit (Kubernetes uses 14 and 15, Calico 20-31). */
const DEFAULT_MARK_BIT = 13

/**
 * Everything the portmap plugin decided from its config, checked before any change, so
 * building the rules cannot fail halfway.
 */
export interface PortmapSettings {
  readonly network: string
  readonly mappings: ReadonlyArray<Mapping>
  /** whether the runtime said which mappings the pod has (a DEL without them must look them up) */
  readonly mappingsKnown: boolean
  readonly snat: boolean
  readonly masqAll: boolean
  readonly conditionsV4: ReadonlyArray<string>
  readonly conditionsV6: ReadonlyArray<string>
  /** which packet filter holds the rules */
  readonly backend: "nftables" | "iptables"
  /** iptables: the bit marking connections to masquerade (hairpin, localhost) */
  readonly markMasqBit: number
  /** iptables: jump here to mark instead of setting our own bit (whoever owns it masquerades) */
  readonly externalSetMarkChain: string | undefined
}

const protocolOf = (text: string | undefined): Mapping["protocol"] => {
  const lower = (text ?? "tcp").toLowerCase()
  return lower === "udp" ? "udp" : lower === "sctp" ? "sctp" : "tcp"
}

/** Decodes and checks the whole config (every problem is found before the first change). */
export const portmapSettings = (request: PluginRequest): Effect.Effect<PortmapSettings, CniError> =>
  Effect.gen(function*() {
    // containerd sends each mapping with Go's field names (HostPort, …): read as Go does
    const raw = withRuntimeCapability(request.raw, "portMappings", (mappings) => eachWithGoFieldNames(mappings, PORT_MAPPING_FIELDS))
    const keys = yield* decodePluginKeys(PortmapKeys)(raw)
    const backend = yield* chooseBackend(keys)
    if (keys.markMasqBit !== undefined && keys.externalSetMarkChain !== undefined) {
      return yield* invalidConfig("externalSetMarkChain", "cannot be combined with markMasqBit")
    }
    if (backend === "iptables") {
      for (const key of ["conditionsV4", "conditionsV6"] as const) {
        const bad = (keys[key] ?? []).find((condition) => /['\\]|--comment/.test(condition))
        if (bad !== undefined) return yield* invalidConfig(key, `'${bad}': iptables arguments without quotes, backslashes or --comment`)
      }
    }
    return {
      network: request.conf.name,
      mappingsKnown: keys.runtimeConfig?.portMappings !== undefined,
      mappings: (keys.runtimeConfig?.portMappings ?? []).map((mapping) => ({
        hostPort: mapping.hostPort,
        containerPort: mapping.containerPort,
        protocol: protocolOf(mapping.protocol),
        hostIP: mapping.hostIP === "" ? undefined : mapping.hostIP
      })),
      snat: keys.snat ?? true,
      masqAll: keys.masqAll ?? false,
      conditionsV4: keys.conditionsV4 ?? [],
      conditionsV6: keys.conditionsV6 ?? [],
      backend,
      markMasqBit: keys.markMasqBit ?? DEFAULT_MARK_BIT,
      externalSetMarkChain: keys.externalSetMarkChain
    }
  })

/** iptables conditions are arguments: they start with '-' (the reference's test) or a negating '!'. */
const looksIptables = (conditions: ReadonlyArray<string> | undefined): boolean | undefined => {
  const first = conditions?.[0]
  return first === undefined || first === "" ? undefined : /^\s*[-!]/.test(first)
}

/**
 * The backend, as the reference chooses it: the one named, else iptables when the config
 * holds iptables-only options (externalSetMarkChain, iptables-style conditions), else
 * tscni's default, nftables. Options of the other backend are an error (code 7).
 */
const chooseBackend = (keys: typeof PortmapKeys.Type): Effect.Effect<"nftables" | "iptables", CniError> => {
  const iptablesOnly: Array<string> = []
  const nftablesOnly: Array<string> = []
  if (keys.externalSetMarkChain !== undefined) iptablesOnly.push("externalSetMarkChain")
  for (const key of ["conditionsV4", "conditionsV6"] as const) {
    const iptables = looksIptables(keys[key])
    if (iptables === true) iptablesOnly.push(key)
    if (iptables === false) nftablesOnly.push(key)
  }
  const backend = keys.backend === "iptables" || keys.backend === "nftables"
    ? keys.backend
    : iptablesOnly.length > 0 ? "iptables" : "nftables"
  const wrong = backend === "iptables" ? nftablesOnly : iptablesOnly
  return wrong.length > 0
    ? Effect.fail(invalidConfig(wrong[0]!, `the ${backend} backend was chosen but ${wrong.join(", ")} ${wrong.length > 1 ? "are" : "is"} for the other one`))
    : Effect.succeed(backend)
}
