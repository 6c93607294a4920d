/**
 * The cluster network's configuration, one JSON document in the datastore (with etcd:
 * `<prefix>/config`), the same on every node: the pod network(s), how big each node's
 * subnet is, and how nodes reach each other's pods. Decoded once, every default filled in,
 * every error naming its field.
 */
import { Effect, Schema } from "effect"
import { type Cidr, formatCidr, hasHostBits, type IpFamily, networkOf, parseCidr } from "@tscni/ip"
import { describeSchemaError } from "@tscni/spec/schema-error"

/** host-gw: a route per peer via its underlay IP; vxlan: an overlay; auto: host-gw where the peer is on-link, else vxlan. */
export type BackendType = "host-gw" | "vxlan" | "auto"

/** One family's pod network: the whole range and the size of each node's share. */
export interface PodNetwork {
  readonly family: IpFamily
  readonly network: Cidr
  readonly subnetLen: number
}

export interface ClusterConfig {
  /** the IPv4 network first, then the IPv6 one when the cluster is dual stack */
  readonly networks: ReadonlyArray<PodNetwork>
  readonly backend: {
    readonly type: BackendType
    readonly vni: number
    /** VXLAN UDP port; 8472 is Linux's (and flannel's) default, not IANA's 4789 */
    readonly port: number
  }
  /** the pods' MTU; undefined: the underlay interface's, minus 50 where VXLAN may be used */
  readonly mtu: number | undefined
}

/** The cluster config is missing or wrong; `field` names the key (`network`, `backend.type`, …). */
export class ClusterConfigError extends Schema.TaggedError<ClusterConfigError>()("ClusterConfigError", {
  field: Schema.String,
  problem: Schema.String
}) {
  override get message(): string {
    return `cluster config: ${this.field === "" ? "" : `${this.field}: `}${this.problem}`
  }
}

export const DEFAULT_VXLAN_PORT = 8472
export const DEFAULT_VNI = 1
const DEFAULT_SUBNET_LEN = { 4: 24, 6: 64 } as const

const ConfigJson = Schema.Struct({
  network: Schema.String,
  subnetLen: Schema.optionalKey(Schema.Number),
  ipv6Network: Schema.optionalKey(Schema.String),
  ipv6SubnetLen: Schema.optionalKey(Schema.Number),
  backend: Schema.optionalKey(Schema.Struct({
    type: Schema.optionalKey(Schema.Literals(["host-gw", "vxlan", "auto"])),
    vni: Schema.optionalKey(Schema.Number),
    port: Schema.optionalKey(Schema.Number)
  })),
  mtu: Schema.optionalKey(Schema.Number)
})

const fail = (field: string, message: string) => Effect.fail(new ClusterConfigError({ field, problem: message }))

const wholeIn = (value: number, low: number, high: number): boolean => Number.isInteger(value) && value >= low && value <= high

/** One family's network and subnet length, checked: a network in canonical form, room for at least one subnet. */
const podNetwork = (family: IpFamily, text: string, field: string, subnetLen: number | undefined, lenField: string) =>
  Effect.gen(function*() {
    const network = parseCidr(text)
    if (network === undefined || network.ip.family !== family) return yield* fail(field, `'${text}' is not an IPv${family} CIDR`)
    if (hasHostBits(network)) return yield* fail(field, `'${text}' has host bits set (the network is ${formatCidr(networkOf(network))})`)
    const len = subnetLen ?? DEFAULT_SUBNET_LEN[family]
    // a node subnet needs a gateway, the broadcast (IPv4) and at least one pod
    const longest = family === 4 ? 30 : 126
    if (!wholeIn(len, network.prefix + 1, longest)) {
      return yield* fail(lenField, `${len} must be a whole number from ${network.prefix + 1} (longer than the network's /${network.prefix}) to ${longest}`)
    }
    return { family, network, subnetLen: len } satisfies PodNetwork
  })

/** Decodes the cluster config document (JSON text), filling in every default. */
export const decodeClusterConfig = (text: string): Effect.Effect<ClusterConfig, ClusterConfigError> =>
  Effect.gen(function*() {
    const json = yield* Effect.try({
      try: (): unknown => JSON.parse(text),
      catch: (error) => new ClusterConfigError({ field: "", problem: `not JSON: ${error instanceof Error ? error.message : String(error)}` })
    })
    const raw = yield* Schema.decodeUnknownEffect(ConfigJson)(json).pipe(
      Effect.mapError((error) => {
        const { path, message } = describeSchemaError(error)
        return new ClusterConfigError({ field: path, problem: message })
      })
    )
    const networks: Array<PodNetwork> = [yield* podNetwork(4, raw.network, "network", raw.subnetLen, "subnetLen")]
    if (raw.ipv6Network !== undefined) {
      networks.push(yield* podNetwork(6, raw.ipv6Network, "ipv6Network", raw.ipv6SubnetLen, "ipv6SubnetLen"))
    } else if (raw.ipv6SubnetLen !== undefined) return yield* fail("ipv6SubnetLen", "set without ipv6Network")
    const vni = raw.backend?.vni ?? DEFAULT_VNI
    if (!wholeIn(vni, 1, 0xffffff)) return yield* fail("backend.vni", `${vni} must be a whole number from 1 to 16777215`)
    const port = raw.backend?.port ?? DEFAULT_VXLAN_PORT
    if (!wholeIn(port, 1, 65535)) return yield* fail("backend.port", `${port} must be a whole number from 1 to 65535`)
    if (raw.mtu !== undefined && !wholeIn(raw.mtu, 1280, 65535)) {
      return yield* fail("mtu", `${raw.mtu} must be a whole number from 1280 (IPv6's minimum) to 65535`)
    }
    return { networks, backend: { type: raw.backend?.type ?? "vxlan", vni, port }, mtu: raw.mtu }
  })
