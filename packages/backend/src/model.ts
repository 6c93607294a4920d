import { Schema } from "effect"

/**
 * A network namespace is named by a path (`/var/run/netns/NAME`, `/proc/PID/ns/net`, any
 * bind mount), exactly as CNI_NETNS names it. `HOST_NETNS` names the namespace the plugin
 * process itself runs in.
 */
export const HOST_NETNS = "host"
export type NetnsPath = string

/** Linux refuses interface names longer than IFNAMSIZ-1. */
export const MAX_IFNAME_LENGTH = 15

export const LinkKind = Schema.Literals(["loopback", "veth", "bridge", "dummy", "ifb", "other"])
export type LinkKind = typeof LinkKind.Type

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
  /** for a veth: the peer's index in the peer's namespace */
  peerIndex: Schema.optionalKey(Schema.Number),
  /** for a bridge port */
  bridgePort: Schema.optionalKey(BridgePortFlags)
})
export type LinkInfo = typeof LinkInfo.Type

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

export interface CreateLinkRequest {
  readonly netns: NetnsPath
  readonly name: string
  readonly kind: "bridge" | "dummy" | "ifb"
  readonly mtu?: number
  readonly mac?: string
}

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
}

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

export const RouteScope = Schema.Literals(["universe", "link", "host"])
export type RouteScope = typeof RouteScope.Type

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
  src: Schema.optionalKey(Schema.String)
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
 * One packet-filter rule in one of tscni's own tables. `comment` identifies the owner
 * (per container) so undo, DEL and GC remove exactly those rules.
 */
export const FilterRule = Schema.Struct({
  family: Schema.Literals(["ip", "ip6", "inet"]),
  table: Schema.String,
  chain: Schema.String,
  /**
   * rule body in nft syntax, e.g. `ip saddr 10.1.0.2 masquerade`. Listings return it as
   * nft prints it, which may be normalised (compare rules by comment, not by text).
   */
  rule: Schema.String,
  comment: Schema.String,
  /** when the chain is a base chain: how it hooks into the stack (used when creating it) */
  baseChain: Schema.optionalKey(
    Schema.Struct({
      type: Schema.Literals(["filter", "nat", "route"]),
      hook: Schema.Literals(["prerouting", "input", "forward", "output", "postrouting"]),
      priority: Schema.Number
    })
  )
})
export type FilterRule = typeof FilterRule.Type
