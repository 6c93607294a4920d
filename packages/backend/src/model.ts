import { Schema } from "effect"

/**
 * A network namespace is named by a path (`/var/run/netns/NAME`, `/proc/PID/ns/net`, any
 * bind mount), exactly as CNI_NETNS names it. `HOST_NETNS` names the namespace the plugin
 * process itself runs in.
 */
export const HOST_NETNS = "host"
/** Names a parameter as a namespace path (see HOST_NETNS) rather than any string. */
export type NetnsPath = string

/** The kernel's interface-name rule (a CNI rule too): see @tscni/spec ifname.ts. */
export { interfaceNameProblem, MAX_IFNAME_LENGTH } from "@tscni/spec/ifname"

/** The link types tscni creates or must recognise; anything else reports as `other`. */
export const LinkKind = Schema.Literals(["loopback", "veth", "bridge", "dummy", "ifb", "vxlan", "other"])
export type LinkKind = typeof LinkKind.Type

/** A VXLAN device's settings, as the kernel reports them (IFLA_VXLAN_*). */
export const VxlanInfo = Schema.Struct({
  vni: Schema.Number,
  /** UDP destination port */
  port: Schema.Number,
  /** the source address of the encapsulated packets */
  local: Schema.optionalKey(Schema.String),
  /** whether the device learns remote MACs from received packets (the agent turns it off) */
  learning: Schema.Boolean,
  /** ifindex of the underlay device it is bound to */
  underlayIndex: Schema.optionalKey(Schema.Number)
})
export type VxlanInfo = typeof VxlanInfo.Type

/** Per-port flags of a link enslaved to a bridge. */
export const BridgePortFlags = Schema.Struct({
  hairpin: Schema.Boolean,
  isolated: Schema.Boolean
})
export type BridgePortFlags = typeof BridgePortFlags.Type

/** A network interface as the kernel reports it. */
export const LinkInfo = Schema.Struct({
  netns: Schema.String,
  index: Schema.Number,
  name: Schema.String,
  kind: LinkKind,
  up: Schema.Boolean,
  mtu: Schema.Number,
  /** lower-case colon form, `00:00:00:00:00:00` for loopback */
  mac: Schema.String,
  txqlen: Schema.Number,
  promisc: Schema.Boolean,
  allmulti: Schema.Boolean,
  /** index of the bridge this link is a port of */
  master: Schema.optionalKey(Schema.Number),
  /**
   * for a veth: the peer's ifindex. It is an index in the PEER's namespace (ifindexes are
   * per namespace), so it names a link here only when both ends live in the same one;
   * which namespace the peer is in is not reported.
   */
  peerIndex: Schema.optionalKey(Schema.Number),
  /** for a bridge port */
  bridgePort: Schema.optionalKey(BridgePortFlags),
  /**
   * the interface alias (IFLA_IFALIAS, `ip link set X alias …`), absent when none is set.
   * Plugins mark what they created with it (e.g. `tscni:<network>` on a bridge).
   */
  alias: Schema.optionalKey(Schema.String),
  /** for a bridge (and only a bridge): whether VLAN filtering is on */
  vlanFiltering: Schema.optionalKey(Schema.Boolean),
  /** for a VXLAN device (and only one): its settings */
  vxlan: Schema.optionalKey(VxlanInfo)
})
export type LinkInfo = typeof LinkInfo.Type

/**
 * A veth pair created in one call with each end in its own namespace, so a half-made pair
 * never exists.
 */
export interface CreateVethRequest {
  readonly netns: NetnsPath
  readonly name: string
  /** the peer is created directly in this namespace (no move afterwards) */
  readonly peerNetns: NetnsPath
  readonly peerName: string
  readonly mtu?: number
  readonly mac?: string
  readonly peerMac?: string
}

/**
 * A sysctl key from its segments, as both backends take keys: dotted
 * (`net.ipv4.conf.eth0.rp_filter`), or a '/' path when a segment holds a dot (an interface
 * like `eth0.100`, where dots cannot separate). The one way to build a key that names an
 * interface.
 */
export const sysctlKey = (...segments: ReadonlyArray<string>): string =>
  segments.some((segment) => segment.includes(".")) ? segments.join("/") : segments.join(".")

/** The segments of a key in either form (a key with a '/' is a path; leading '/' ignored). */
export const sysctlSegments = (key: string): Array<string> =>
  key.includes("/") ? key.replace(/^\/+/, "").split("/") : key.split(".")

/** A key in the one form sysctlKey would write it: how the mock stores and compares keys. */
export const canonicalSysctlKey = (key: string): string => sysctlKey(...sysctlSegments(key))

/** Longest interface alias the kernel stores (IFALIASZ-1 bytes of UTF-8). */
export const MAX_ALIAS_BYTES = 255

/** Why the kernel would refuse an alias (ERANGE), or undefined: the rule both backends apply. */
export const aliasProblem = (alias: string | undefined): string | undefined =>
  alias !== undefined && new TextEncoder().encode(alias).length > MAX_ALIAS_BYTES ? `alias is longer than ${MAX_ALIAS_BYTES} bytes` : undefined

/** A single link (bridge, dummy or ifb) created with its settings, so it never exists half-configured. */
export interface CreateLinkRequest {
  readonly netns: NetnsPath
  readonly name: string
  readonly kind: "bridge" | "dummy" | "ifb" | "vxlan"
  readonly mtu?: number
  readonly mac?: string
  /** interface alias to set on the new link (at most MAX_ALIAS_BYTES); "" means none */
  readonly alias?: string
  /**
   * bridges only (Invalid on other kinds): create with VLAN filtering on. `true` fails
   * with reason Unsupported, creating nothing, on kernels without bridge VLAN filtering;
   * `false` is the kernel default and works everywhere.
   */
  readonly vlanFiltering?: boolean
  /** required for kind vxlan (and Invalid on any other kind) */
  readonly vxlan?: VxlanSettings
}

/** How a VXLAN device is made: learning off unless asked, no default remote (peers are FDB entries). */
export interface VxlanSettings {
  readonly vni: number
  readonly port: number
  readonly local?: string
  /** name of the underlay link to bind to */
  readonly underlay?: string
  readonly learning?: boolean
}

/** A neighbour (ARP / NDP) entry on a link: `ip` resolves to `mac`. */
export const Neighbor = Schema.Struct({
  link: Schema.String,
  ip: Schema.String,
  mac: Schema.String,
  /** NUD_PERMANENT: never expires, never re-resolved (what the agent adds) */
  permanent: Schema.Boolean
})
export type Neighbor = typeof Neighbor.Type

/** A forwarding entry of a VXLAN device (`bridge fdb … self`): frames for `mac` go to the VTEP at `dst`. */
export const FdbEntry = Schema.Struct({
  link: Schema.String,
  mac: Schema.String,
  dst: Schema.String
})
export type FdbEntry = typeof FdbEntry.Type

/** Changes to apply to an existing link; absent keys are left as they are. */
export interface LinkChanges {
  readonly up?: boolean
  readonly mtu?: number
  readonly mac?: string
  /** bridge name to enslave to, or null to release from its bridge */
  readonly master?: string | null
  readonly txqlen?: number
  readonly promisc?: boolean
  readonly allmulti?: boolean
  /** bridge port flags; only valid on a link that has a master */
  readonly hairpin?: boolean
  readonly isolated?: boolean
  /** new interface alias (at most MAX_ALIAS_BYTES); the empty string clears it */
  readonly alias?: string
}

/**
 * One VLAN of a bridge port (or of the bridge device itself), as `bridge vlan` shows it.
 * `vid` is 1..4094; `pvid`: untagged ingress frames are put in this VLAN (a port has at
 * most one); `untagged`: frames of this VLAN leave the port untagged. On kernels with
 * bridge VLAN support, a new bridge and every new port start with VLAN 1 pvid untagged
 * (the bridge's default_pvid).
 */
export const BridgeVlan = Schema.Struct({
  vid: Schema.Number,
  pvid: Schema.Boolean,
  untagged: Schema.Boolean
})
export type BridgeVlan = typeof BridgeVlan.Type

/** Valid VLAN ids: 0 and 4095 are reserved. */
export const MIN_VLAN_ID = 1
/** The highest VLAN id a bridge port can carry (4095 is reserved), the upper bound both backends check. */
export const MAX_VLAN_ID = 4094

/** Why a VLAN id is refused (EINVAL), or undefined: the rule both backends apply. */
export const vlanIdProblem = (vid: number): string | undefined =>
  Number.isInteger(vid) && vid >= MIN_VLAN_ID && vid <= MAX_VLAN_ID ? undefined : `invalid VLAN id ${vid} (expected ${MIN_VLAN_ID}..${MAX_VLAN_ID})`

/** Why a conntrack filter's port is refused (EINVAL, before any ctnetlink traffic), or undefined. */
export const conntrackPortProblem = (port: number): string | undefined =>
  Number.isInteger(port) && port >= 1 && port <= 65535 ? undefined : `bad port ${port}`

/** An address family where a Backend value records one (addresses, iptables batches). */
export const IpFamily = Schema.Literals([4, 6])
export type IpFamily = typeof IpFamily.Type

/** An address assigned to a link, in CIDR form (`10.1.0.2/24`, `fd00::2/64`). */
export const AddressInfo = Schema.Struct({
  netns: Schema.String,
  link: Schema.String,
  linkIndex: Schema.Number,
  family: IpFamily,
  cidr: Schema.String
})
export type AddressInfo = typeof AddressInfo.Type

/** How addRoute adds: see Backend.addRoute. */
export interface AddRouteOptions {
  readonly append?: boolean
  readonly protocol?: number
}

/** The rtm_protocol of the routes the node agent owns (unused by iproute2's rt_protos list). */
export const ROUTE_PROTOCOL_TSCNI = 116

/** `noDad`: the address is usable at once, without waiting out IPv6 duplicate address detection. */
export interface AddAddressOptions {
  readonly noDad?: boolean
}

/**
 * How far a route's destination is: `link` for directly attached networks (no gateway),
 * `host` for local addresses, `universe` (the default) for the rest.
 */
export const RouteScope = Schema.Literals(["universe", "link", "host"])
export type RouteScope = typeof RouteScope.Type

/**
 * Who installed a route (rtm_protocol): `kernel` for the connected routes the kernel adds
 * with an address, `boot` for routes added without naming a protocol (what addRoute and
 * `ip route add` use), `static` for routes an administrator marked so, else the number.
 */
export const RouteProtocol = Schema.Union([Schema.Literals(["kernel", "boot", "static"]), Schema.Number])
export type RouteProtocol = typeof RouteProtocol.Type

/**
 * A route. `dst` is a CIDR (`0.0.0.0/0` / `::/0` for the default route). A route names
 * either a gateway, a link, or both. `table` defaults to main (254).
 */
export const Route = Schema.Struct({
  dst: Schema.String,
  gateway: Schema.optionalKey(Schema.String),
  link: Schema.optionalKey(Schema.String),
  scope: Schema.optionalKey(RouteScope),
  priority: Schema.optionalKey(Schema.Number),
  table: Schema.optionalKey(Schema.Number),
  mtu: Schema.optionalKey(Schema.Number),
  advmss: Schema.optionalKey(Schema.Number),
  /** preferred source address */
  src: Schema.optionalKey(Schema.String),
  /**
   * RTNH_F_ONLINK: the gateway is on the link even though no address of the link covers it
   * (VXLAN routes via the peer subnet's `.0`). Reported by listRoutes when set.
   */
  onlink: Schema.optionalKey(Schema.Boolean),
  /**
   * Reported by listRoutes, as `ip route` does: present unless it is `boot` (absent means
   * boot, like an absent table means main), so connected routes say `kernel` and routes
   * tscni added have none. Ignored by addRoute (which always adds with boot) and by
   * deleteRoute (a route is identified by dst, table, metric, gateway and link).
   */
  protocol: Schema.optionalKey(RouteProtocol)
})
export type Route = typeof Route.Type

/** A token bucket filter, the qdisc that shapes a link to a rate. */
export const TbfOptions = Schema.Struct({
  /** bits per second */
  rate: Schema.Number,
  /** bits */
  burst: Schema.Number,
  /** bytes queued before drop */
  limit: Schema.Number
})
export type TbfOptions = typeof TbfOptions.Type

/** A qdisc as listQdiscs reports it, enough for bandwidth to find and check the ones it added. */
export const QdiscInfo = Schema.Struct({
  link: Schema.String,
  kind: Schema.Literals(["tbf", "ingress", "clsact", "other"]),
  /** `root`, `ingress` or a class id like `1:0` */
  parent: Schema.String,
  /** e.g. `1:` or `ffff:` */
  handle: Schema.optionalKey(Schema.String),
  tbf: Schema.optionalKey(TbfOptions)
})
export type QdiscInfo = typeof QdiscInfo.Type

/**
 * The qdiscs bandwidth adds: a tbf at the root to shape egress, or an ingress/clsact
 * qdisc to hang a redirect filter on.
 */
export interface AddQdiscRequest {
  readonly link: string
  readonly kind: "tbf" | "ingress" | "clsact"
  readonly parent: "root" | "ingress"
  readonly tbf?: TbfOptions
}

/** A tc filter that redirects every packet entering `link` to `toLink`'s egress. */
export const RedirectFilter = Schema.Struct({
  link: Schema.String,
  toLink: Schema.String
})
export type RedirectFilter = typeof RedirectFilter.Type

/**
 * nftables address families tscni uses: `bridge` sees frames crossing a bridge (e.g. MAC
 * spoof checks on its ports), `netdev` sees a device's ingress/egress before the stack.
 */
export const FilterFamily = Schema.Literals(["ip", "ip6", "inet", "bridge", "netdev"])
export type FilterFamily = typeof FilterFamily.Type
/** The filter families as a set, for validating names that come from nft or from a config. */
export const FILTER_FAMILIES: ReadonlySet<string> = new Set(FilterFamily.literals)

/**
 * One packet-filter rule in one of tscni's own tables. `comment` identifies the owner
 * (per container) so undo, DEL and GC remove exactly those rules.
 */
export const FilterRule = Schema.Struct({
  family: FilterFamily,
  table: Schema.String,
  chain: Schema.String,
  /**
   * rule body in nft syntax, e.g. `ip saddr 10.1.0.2 masquerade`. Listings return it as
   * nft prints it, which may be normalised (compare rules by comment, not by text).
   */
  rule: Schema.String,
  comment: Schema.String,
  /**
   * when the chain is a base chain: how it hooks into the stack (used when creating it).
   * `bridge` and `netdev` chains are `type filter` only; `netdev` hooks are `ingress` and
   * `egress` and need `device` (recent kernels accept one that does not exist yet); the
   * others use the five IP hooks.
   */
  baseChain: Schema.optionalKey(
    Schema.Struct({
      type: Schema.Literals(["filter", "nat", "route"]),
      hook: Schema.Literals(["prerouting", "input", "forward", "output", "postrouting", "ingress", "egress"]),
      priority: Schema.Number,
      /** the interface a `netdev` base chain is attached to */
      device: Schema.optionalKey(Schema.String)
    })
  )
})
export type FilterRule = typeof FilterRule.Type

/** Which tracked connections to forget: those of one protocol and original destination port. */
export interface ConntrackFilter {
  readonly family: 4 | 6
  readonly protocol: "tcp" | "udp" | "sctp"
  readonly dstPort: number
}

/** The iptables tables tscni writes to. */
export const IptablesTable = Schema.Literals(["nat", "filter", "mangle"])
export type IptablesTable = typeof IptablesTable.Type

/** The kernel's built-in chains; which of them a table has is `BUILTIN_CHAINS[table]`. */
export const IptablesBuiltinChain = Schema.Literals(["PREROUTING", "INPUT", "FORWARD", "OUTPUT", "POSTROUTING"])
export type IptablesBuiltinChain = typeof IptablesBuiltinChain.Type

/**
 * A jump from a built-in chain into one of tscni's: `append` puts it after what is there,
 * `insert` before; `match` are extra match arguments (e.g. `["-m", "addrtype",
 * "--dst-type", "LOCAL"]`).
 */
export const IptablesJump = Schema.Struct({
  chain: IptablesBuiltinChain,
  position: Schema.Literals(["append", "insert"]),
  match: Schema.optionalKey(Schema.Array(Schema.String))
})
export type IptablesJump = typeof IptablesJump.Type

/**
 * One of tscni's own iptables chains (named `TSCNI-…`), created when missing. Each of
 * `jumpFrom` hooks it into a built-in chain with one jump rule, added once (whoever comes
 * first), carrying the comment IPTABLES_JUMP_COMMENT, and removed with the chain.
 */
export const IptablesChain = Schema.Struct({
  name: Schema.String,
  jumpFrom: Schema.optionalKey(Schema.Array(IptablesJump))
})
export type IptablesChain = typeof IptablesChain.Type

/**
 * One rule to add, as iptables arguments after `-A <chain>` (e.g. `["-s", "10.1.0.2/32",
 * "-j", "MASQUERADE"]`), without a comment: the batch's comment is added to every rule.
 * `insert` puts the batch's rules of a chain at its top (in batch order), `append` (the
 * default) at its end.
 */
export const IptablesRuleSpec = Schema.Struct({
  chain: Schema.String,
  args: Schema.Array(Schema.String),
  position: Schema.optionalKey(Schema.Literals(["append", "insert"]))
})
export type IptablesRuleSpec = typeof IptablesRuleSpec.Type

/**
 * Rules of one owner in one iptables table of one family, added in one transaction
 * (`iptables-restore --noflush`). Every rule goes into one of the batch's own chains and
 * carries `comment` (the owner, per container), so DEL and GC remove exactly those.
 */
export interface IptablesBatch {
  readonly family: IpFamily
  readonly table: IptablesTable
  readonly chains: ReadonlyArray<IptablesChain>
  readonly rules: ReadonlyArray<IptablesRuleSpec>
  readonly comment: string
}

/** Which rules to remove: those of one owner in one table of one family. */
export interface IptablesSelector {
  readonly family: IpFamily
  readonly table: IptablesTable
  readonly comment: string
}

/**
 * A rule of tscni's as listed: in one of its chains, or a jump into one from a built-in
 * chain. `args` come as iptables-save prints them (normalised: `-s 10.1.0.2` reads
 * `-s 10.1.0.2/32`, `-p tcp --dport 80` reads `-p tcp -m tcp --dport 80`), without the
 * comment; `comment` is "" for a rule that has none (added by hand).
 */
export const IptablesListedRule = Schema.Struct({
  chain: Schema.String,
  args: Schema.Array(Schema.String),
  comment: Schema.String
})
export type IptablesListedRule = typeof IptablesListedRule.Type

/** tscni's chains in a table (in name order) and their rules (in chain order, jumps included). */
export const IptablesListing = Schema.Struct({
  chains: Schema.Array(Schema.String),
  rules: Schema.Array(IptablesListedRule)
})
export type IptablesListing = typeof IptablesListing.Type

/**
 * One attachment's iptables rules in a chain of its own (`TSCNI-…`, named from the
 * attachment), entered by one jump from `entry`, a shared chain of tscni's that is created
 * and hooked into its built-in chains when missing. The jump carries the owner comment:
 * it is how DEL and GC find the chain, and DEL removes jump and chain by name, without
 * reading the table. `position`: where the jump goes in `entry` (insert: newest first).
 */
export const IptablesPodChain = Schema.Struct({
  name: Schema.String,
  entry: IptablesChain,
  position: Schema.optionalKey(Schema.Literals(["append", "insert"])),
  /** each rule's arguments after `-A <name>` */
  rules: Schema.Array(Schema.Array(Schema.String))
})
export type IptablesPodChain = typeof IptablesPodChain.Type

/** One owner's chains in one table of one family, added in one transaction. */
export interface IptablesPodBatch {
  readonly family: IpFamily
  readonly table: IptablesTable
  readonly comment: string
  readonly chains: ReadonlyArray<IptablesPodChain>
}

/** Where one owner's chains are: each by name, with the shared chain that jumps into it. */
export const IptablesPodChainRef = Schema.Struct({ name: Schema.String, entry: Schema.String })
export type IptablesPodChainRef = typeof IptablesPodChainRef.Type

/** Which chains to remove: one owner's, in one table of one family. */
export interface IptablesPodSelector {
  readonly family: IpFamily
  readonly table: IptablesTable
  readonly comment: string
  readonly chains: ReadonlyArray<IptablesPodChainRef>
}
