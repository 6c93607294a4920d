import {
  BackendError,
  type BackendErrorReason,
  type BridgePortFlags,
  type BridgeVlan,
  type FilterRule,
  HOST_NETNS,
  type IpFamily,
  type IptablesTable,
  type LinkInfo,
  type LinkKind,
  interfaceNameProblem,
  type NetnsPath,
  type RouteScope,
  sysctlKey,
  type TbfOptions,
  type VxlanInfo
} from "@tscni/backend"
import { Effect } from "effect"
import type { Cidr, Ip } from "@tscni/ip"
import type { NftTableState } from "./nftSets.ts"

/** A link inside the model; `index` is unique within its namespace only, as in the kernel. */
export interface LinkState {
  index: number
  name: string
  kind: LinkKind
  up: boolean
  mtu: number
  mac: string
  txqlen: number
  promisc: boolean
  allmulti: boolean
  /** index of the bridge (same namespace) this link is a port of */
  master: number | undefined
  bridgePort: BridgePortFlags | undefined
  /** for a veth: where its other end lives */
  peer: { netns: NetnsPath; index: number } | undefined
  /** IFLA_IFALIAS; undefined (never "") when none is set */
  alias: string | undefined
  /** bridges only */
  vlanFiltering: boolean | undefined
  /** bridge VLANs of a bridge or a port, by vid; [] for other links (and without VLAN support) */
  vlans: Array<BridgeVlan>
  /** VXLAN devices only */
  vxlan: VxlanInfo | undefined
}

/** One address on one link. IPv4 keeps `prefix` as part of its identity (the kernel does). */
export interface AddressState {
  readonly linkIndex: number
  readonly cidr: Cidr
}

/**
 * One route. `linkIndex` is the nexthop device: the given link or, for a gateway route
 * without one, the link the gateway was resolved through (the kernel records it too).
 */
export interface RouteState {
  readonly dst: Cidr
  readonly gateway: Ip | undefined
  readonly linkIndex: number
  readonly scope: RouteScope
  readonly priority: number
  readonly table: number
  readonly mtu: number | undefined
  readonly advmss: number | undefined
  readonly src: Ip | undefined
  /** connected routes are the kernel's; everything added through the Backend is boot */
  readonly protocol: "kernel" | "boot" | number
  /** RTNH_F_ONLINK: the gateway was taken as on the link without a route to it */
  readonly onlink: boolean
}

/** A neighbour entry (ip → mac) on a link. */
export interface NeighborState {
  readonly linkIndex: number
  readonly ip: Ip
  readonly mac: string
  readonly permanent: boolean
}

/** A VXLAN device's forwarding entry (mac → remote VTEP). */
export interface FdbState {
  readonly linkIndex: number
  readonly mac: string
  readonly dst: Ip
}

/** A qdisc someone added: a root tbf, or an ingress/clsact at parent ingress. */
export interface QdiscState {
  readonly linkIndex: number
  readonly kind: "tbf" | "ingress" | "clsact"
  readonly parent: "root" | "ingress"
  readonly tbf: TbfOptions | undefined
}

/** A tc redirect from `linkIndex`'s ingress to `toLinkIndex`'s egress (same namespace). */
export interface RedirectState {
  readonly linkIndex: number
  readonly toLinkIndex: number
}

/** One iptables rule: its arguments as added (the model does not normalise them) and its comment. */
export interface IptablesRuleState {
  readonly args: ReadonlyArray<string>
  readonly comment: string
}

/** One iptables table of one family: every chain (built-in ones included) with its rules in order. */
export interface IptablesTableState {
  readonly family: IpFamily
  readonly table: IptablesTable
  readonly chains: Map<string, Array<IptablesRuleState>>
}

/** Everything one network namespace holds. */
export interface NetnsState {
  readonly path: NetnsPath
  readonly links: Map<number, LinkState>
  /** next ifindex to hand out; not part of snapshots */
  nextIndex: number
  addresses: Array<AddressState>
  routes: Array<RouteState>
  neighbors: Array<NeighborState>
  fdb: Array<FdbState>
  readonly sysctls: Map<string, string>
  qdiscs: Array<QdiscState>
  redirects: Array<RedirectState>
  filterRules: Array<FilterRule>
  /** iptables tables by `<family> <table>`, created on first use with their built-in chains */
  readonly iptables: Map<string, IptablesTableState>
  /** keyed nftables tables by `<family> <name>` */
  readonly nftTables: Map<string, NftTableState>
}

/** Whether the modelled kernel has bridge VLAN filtering (CONFIG_BRIDGE_VLAN_FILTERING). */
export type BridgeVlanSupport = "supported" | "unsupported"

/** The whole in-memory kernel: namespaces by path plus counters that never show in snapshots. */
export interface KernelState {
  readonly namespaces: Map<NetnsPath, NetnsState>
  macCounter: number
  readonly vlanFiltering: BridgeVlanSupport
}

/** VLAN 1 pvid untagged: what a new bridge and every new port get (the default_pvid). */
export const DEFAULT_BRIDGE_VLAN: BridgeVlan = { vid: 1, pvid: true, untagged: true }

/** The VLANs a new bridge or a newly enslaved port starts with on this kernel. */
export const defaultVlans = (state: KernelState): Array<BridgeVlan> =>
  state.vlanFiltering === "supported" ? [{ ...DEFAULT_BRIDGE_VLAN }] : []

/** The kernel's main routing table, where routes go unless they name another. */
export const MAIN_TABLE = 254
/** Loopback has no hardware address; the kernel reports all zeros. */
export const LOOPBACK_MAC = "00:00:00:00:00:00"

/** Builds the one BackendError the mock fails with. */
export const backendError = (
  operation: string,
  reason: BackendErrorReason,
  message: string,
  errno?: string
): BackendError =>
  errno === undefined
    ? new BackendError({ operation, reason, message })
    : new BackendError({ operation, reason, message, errno })

/** Fails with a BackendError; `return yield* fail(...)` inside generators. */
export const fail = (
  operation: string,
  reason: BackendErrorReason,
  message: string,
  errno?: string
): Effect.Effect<never, BackendError> => Effect.fail(backendError(operation, reason, message, errno))

/** Per-namespace sysctls every new namespace starts with. */
const netnsSysctls = (path: NetnsPath): Array<readonly [string, string]> => [
  ["net.ipv4.ip_forward", "0"],
  ["net.ipv6.conf.all.forwarding", "0"],
  ["net.ipv4.conf.all.route_localnet", "0"],
  ...(path === HOST_NETNS
    ? [
        ["net.bridge.bridge-nf-call-iptables", "0"] as const,
        ["net.bridge.bridge-nf-call-ip6tables", "0"] as const
      ]
    : [])
]

/** Per-link sysctls, created with the link and removed with it (or reset when it moves). */
export const linkSysctls = (name: string): Array<[string, string]> => [
  [sysctlKey("net", "ipv4", "conf", name, "route_localnet"), "0"],
  [sysctlKey("net", "ipv4", "conf", name, "arp_notify"), "0"],
  [sysctlKey("net", "ipv6", "conf", name, "accept_dad"), "1"],
  [sysctlKey("net", "ipv6", "conf", name, "disable_ipv6"), "0"]
]

/** Gives a new (or newly arrived) link its sysctls with default values. */
export const addLinkSysctls = (ns: NetnsState, name: string): void => {
  for (const [key, value] of linkSysctls(name)) ns.sysctls.set(key, value)
}

/** Drops a link's sysctls when it is deleted or leaves the namespace. */
export const removeLinkSysctls = (ns: NetnsState, name: string): void => {
  for (const [key] of linkSysctls(name)) ns.sysctls.delete(key)
}

/** A namespace as the kernel creates it: only `lo`, down, no addresses. */
export const newNetns = (path: NetnsPath): NetnsState => {
  const ns: NetnsState = {
    path,
    links: new Map(),
    nextIndex: 2,
    addresses: [],
    routes: [],
    neighbors: [],
    fdb: [],
    sysctls: new Map(netnsSysctls(path)),
    qdiscs: [],
    redirects: [],
    filterRules: [],
    iptables: new Map(),
    nftTables: new Map()
  }
  ns.links.set(1, {
    index: 1,
    name: "lo",
    kind: "loopback",
    up: false,
    mtu: 65536,
    mac: LOOPBACK_MAC,
    txqlen: 1000,
    promisc: false,
    allmulti: false,
    master: undefined,
    bridgePort: undefined,
    peer: undefined,
    alias: undefined,
    vlanFiltering: undefined,
    vlans: [],
    vxlan: undefined
  })
  addLinkSysctls(ns, "lo")
  return ns
}

/** Looks a namespace up or fails with NotFound, as opening a missing netns path does (ENOENT). */
export const requireNetns = (
  state: KernelState,
  operation: string,
  path: NetnsPath
): Effect.Effect<NetnsState, BackendError> => {
  const ns = state.namespaces.get(path)
  return ns === undefined
    ? Effect.fail(
      new BackendError({
        operation,
        reason: "NotFound",
        message: `${operation}: network namespace ${path} does not exist`,
        errno: "ENOENT",
        netns: true
      })
    )
    : Effect.succeed(ns)
}

/** The link called `name`, if any (names are unique per namespace). */
export const findLink = (ns: NetnsState, name: string): LinkState | undefined => {
  for (const link of ns.links.values()) if (link.name === name) return link
  return undefined
}

/** Looks a link up by name or fails with NotFound (ENODEV). */
export const requireLink = (
  ns: NetnsState,
  operation: string,
  name: string
): Effect.Effect<LinkState, BackendError> => {
  const link = findLink(ns, name)
  return link === undefined
    ? fail(operation, "NotFound", `link ${name} does not exist in ${ns.path}`, "ENODEV")
    : Effect.succeed(link)
}

/** Name of the link with `index`, for projecting index-keyed state back to names. */
export const linkName = (ns: NetnsState, index: number): string => ns.links.get(index)?.name ?? `if${index}`

/**
 * Picks an ifindex: `preferred` when it is free (a link moving namespaces keeps its index
 * if it can, as the kernel does), else the next unused one.
 */
export const allocateIndex = (ns: NetnsState, preferred?: number): number => {
  if (preferred !== undefined && !ns.links.has(preferred)) return preferred
  while (ns.links.has(ns.nextIndex)) ns.nextIndex++
  return ns.nextIndex++
}

/** A deterministic, locally administered unicast MAC from a counter. */
export const generateMac = (state: KernelState): string => {
  state.macCounter++
  const n = state.macCounter
  const octets = [0x02, 0x6d, 0x6b, (n >> 16) & 0xff, (n >> 8) & 0xff, n & 0xff]
  return octets.map((o) => o.toString(16).padStart(2, "0")).join(":")
}

/** Validates an interface name like the kernel's dev_valid_name (IFNAMSIZ-1 = 15). */
export const validateLinkName = (operation: string, name: string): Effect.Effect<void, BackendError> =>
  interfaceNameProblem(name) !== undefined
    ? fail(operation, "Invalid", `invalid interface name ${JSON.stringify(name)}`, "EINVAL")
    : Effect.void

/** The kernel's view of a link, as listLinks reports it. */
export const toLinkInfo = (ns: NetnsState, link: LinkState): LinkInfo => ({
  netns: ns.path,
  index: link.index,
  name: link.name,
  kind: link.kind,
  up: link.up,
  mtu: link.mtu,
  mac: link.mac,
  txqlen: link.txqlen,
  promisc: link.promisc,
  allmulti: link.allmulti,
  ...(link.master === undefined ? {} : { master: link.master }),
  ...(link.peer === undefined ? {} : { peerIndex: link.peer.index }),
  ...(link.bridgePort === undefined ? {} : { bridgePort: { ...link.bridgePort } }),
  ...(link.alias === undefined ? {} : { alias: link.alias }),
  ...(link.vlanFiltering === undefined ? {} : { vlanFiltering: link.vlanFiltering }),
  ...(link.vxlan === undefined ? {} : { vxlan: { ...link.vxlan } })
})

/** Links in index order, the order the kernel dumps them in. */
export const linksInOrder = (ns: NetnsState): Array<LinkState> =>
  [...ns.links.values()].sort((a, b) => a.index - b.index)
