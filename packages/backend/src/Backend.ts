import { Context, type Effect } from "effect"
import type { BackendError } from "./errors.ts"
import type {
  AddAddressOptions,
  AddRouteOptions,
  ConntrackFilter,
  AddQdiscRequest,
  AddressInfo,
  BridgeVlan,
  CreateLinkRequest,
  CreateVethRequest,
  FdbEntry,
  FilterRule,
  IptablesBatch,
  IptablesChain,
  IptablesListing,
  IptablesPodBatch,
  IptablesPodSelector,
  IptablesSelector,
  IptablesTable,
  IpFamily,
  LinkChanges,
  LinkInfo,
  Neighbor,
  NetnsPath,
  QdiscInfo,
  RedirectFilter,
  Route
} from "./model.ts"
import type { NftChanges, NftElement, NftElementKey, NftTable, NftTableRef } from "./nftSets.ts"

type Op<A> = Effect.Effect<A, BackendError>

/**
 * Everything a step may ask of the kernel. Two implementations exist: LinuxBackend
 * (rtnetlink, sysctl files, nftables) and MockBackend (an in-memory kernel model), so
 * every step and pipeline can be tested without root and with fault injection.
 *
 * Every operation names the namespace it acts in. Operations fail only with BackendError;
 * its `reason` tells undo whether the object was simply already gone (`NotFound`).
 */
export interface BackendShape {
  // network namespaces
  /** Creates a named, bind-mounted namespace and returns its path. */
  readonly createNetns: (name: string) => Op<NetnsPath>
  /** Removes a namespace created by createNetns. */
  readonly deleteNetns: (path: NetnsPath) => Op<void>
  /** True when the path exists and is a network namespace. */
  readonly netnsExists: (path: NetnsPath) => Op<boolean>

  // links
  readonly listLinks: (netns: NetnsPath) => Op<ReadonlyArray<LinkInfo>>
  readonly getLink: (netns: NetnsPath, name: string) => Op<LinkInfo>
  /** One link by ifindex (a veth's `peerIndex`); NotFound when absent. */
  readonly getLinkByIndex: (netns: NetnsPath, index: number) => Op<LinkInfo>
  /**
   * The ports of one bridge, and only those (the kernel filters the dump): what a per-pod
   * call uses instead of listing every link of the host. NotFound when the bridge is absent.
   */
  readonly listBridgePorts: (netns: NetnsPath, bridge: string) => Op<ReadonlyArray<LinkInfo>>
  /** Creates a veth pair; the peer is born in `peerNetns`. Returns both ends. */
  readonly createVeth: (request: CreateVethRequest) => Op<{ readonly link: LinkInfo; readonly peer: LinkInfo }>
  readonly createLink: (request: CreateLinkRequest) => Op<LinkInfo>
  /** Deleting one end of a veth deletes the other too. */
  readonly deleteLink: (netns: NetnsPath, name: string) => Op<void>
  /**
   * Deletes these links of one namespace in one kernel batch: one unregister, one wait for
   * the kernel's RCU grace period instead of one per link (a network's last pod's veth and
   * its bridge: 10–25 ms less than two deleteLinks here). All or none: NotFound, nothing deleted,
   * when one is missing. Only for links the caller owns: the kernel is asked to delete a
   * link group, set on them for the moment (a random 32-bit group number).
   */
  readonly deleteLinksTogether: (netns: NetnsPath, names: ReadonlyArray<string>) => Op<void>
  readonly setLink: (netns: NetnsPath, name: string, changes: LinkChanges) => Op<LinkInfo>
  /** Moves a link to another namespace, optionally renaming it on arrival. */
  readonly moveLink: (netns: NetnsPath, name: string, toNetns: NetnsPath, newName?: string) => Op<LinkInfo>

  // bridge VLANs (AF_BRIDGE IFLA_AF_SPEC / IFLA_BRIDGE_VLAN_INFO, as `bridge vlan`)
  /**
   * VLANs of a bridge port or of a bridge itself, by vid; [] for any other link and on
   * kernels without bridge VLAN support. NotFound when the link does not exist.
   */
  readonly listBridgeVlans: (netns: NetnsPath, link: string) => Op<ReadonlyArray<BridgeVlan>>
  /**
   * Adds a VLAN to a bridge port (or to the bridge device itself, `self`). An existing vid
   * gets exactly the new flags; `pvid` moves the port's pvid to this vid. Invalid for a vid
   * outside 1..4094 or a link that is neither a bridge nor a port; Unsupported (changing
   * nothing) on kernels without bridge VLAN filtering.
   */
  readonly addBridgeVlan: (netns: NetnsPath, link: string, vlan: BridgeVlan) => Op<void>
  /** Removes a VLAN from a bridge port or bridge; NotFound when it is not there. */
  readonly deleteBridgeVlan: (netns: NetnsPath, link: string, vid: number) => Op<void>

  // addresses
  readonly listAddresses: (netns: NetnsPath, link?: string) => Op<ReadonlyArray<AddressInfo>>
  /**
   * `noDad` skips IPv6 duplicate address detection for this address (IFA_F_NODAD): usable
   * at once instead of seconds later; for addresses that are ours by construction.
   */
  readonly addAddress: (netns: NetnsPath, link: string, cidr: string, options?: AddAddressOptions) => Op<void>
  readonly deleteAddress: (netns: NetnsPath, link: string, cidr: string) => Op<void>

  // routes (main table unless the route says otherwise)
  readonly listRoutes: (netns: NetnsPath) => Op<ReadonlyArray<Route>>
  /**
   * The route a packet to `address` would take (the kernel's lookup, as `ip route get`):
   * `dst` the address itself, with the link and gateway; undefined when unreachable. One
   * question, whatever the number of routes: what a per-pod call uses instead of listRoutes.
   */
  readonly lookupRoute: (netns: NetnsPath, address: string) => Op<Route | undefined>
  /**
   * `append`: a route to the same destination through another gateway or link may exist
   * already (a pod on two networks has two default routes; IPv6 makes them multipath, as
   * the reference plugins' RouteAddEcmp does). An identical route is still AlreadyExists.
   * `protocol`: the rtm_protocol to add it with (default boot; the route's own `protocol`
   * is ignored, so a listed route re-added stays tscni's): the node agent marks the routes it
   * owns with ROUTE_PROTOCOL_TSCNI, so it finds them again without touching anyone else's.
   */
  readonly addRoute: (netns: NetnsPath, route: Route, options?: AddRouteOptions) => Op<void>
  readonly deleteRoute: (netns: NetnsPath, route: Route) => Op<void>

  // neighbours and VXLAN forwarding entries (the node agent's VXLAN peers)
  /**
   * The link's neighbour entries that resolve to a MAC (IPv4 and IPv6), without the kernel's
   * NOARP ones (multicast); NotFound when the link is absent.
   */
  readonly listNeighbors: (netns: NetnsPath, link: string) => Op<ReadonlyArray<Neighbor>>
  /** Adds a permanent neighbour entry, replacing one for the same address on that link. */
  readonly setNeighbor: (netns: NetnsPath, neighbor: { readonly link: string; readonly ip: string; readonly mac: string }) => Op<void>
  /** Deletes the link's entry for `ip`; NotFound when there is none. */
  readonly deleteNeighbor: (netns: NetnsPath, neighbor: { readonly link: string; readonly ip: string }) => Op<void>
  /** A VXLAN device's remote forwarding entries (those with a destination); NotFound when the link is absent. */
  readonly listFdb: (netns: NetnsPath, link: string) => Op<ReadonlyArray<FdbEntry>>
  /** Adds a permanent forwarding entry on a VXLAN device, replacing the MAC's entry if it has one. */
  readonly setFdb: (netns: NetnsPath, entry: FdbEntry) => Op<void>
  /** Deletes the device's entry for that MAC and destination; NotFound when there is none. */
  readonly deleteFdb: (netns: NetnsPath, entry: FdbEntry) => Op<void>

  // sysctls, by key: dotted (`net.ipv4.ip_forward`) or, when a segment holds a dot, a path; build keys that name an interface with sysctlKey
  readonly readSysctl: (netns: NetnsPath, key: string) => Op<string>
  /** Writes the value and returns the previous one, so undo can restore it. */
  readonly writeSysctl: (netns: NetnsPath, key: string, value: string) => Op<string>

  // traffic control
  /**
   * The qdiscs someone added to the link. The kernel's own defaults (noqueue, pfifo_fast,
   * fq_codel, mq… with handle 0, attached when a link comes up) are never listed, so a
   * link nobody shaped lists [] whether it is up or down.
   */
  readonly listQdiscs: (netns: NetnsPath, link: string) => Op<ReadonlyArray<QdiscInfo>>
  readonly addQdisc: (netns: NetnsPath, request: AddQdiscRequest) => Op<void>
  readonly deleteQdisc: (netns: NetnsPath, link: string, parent: "root" | "ingress") => Op<void>
  /**
   * Ingress redirects of the namespace, or only those taking `link`'s traffic (NotFound when
   * there is no such link): one link's are what steps ask for, and on a node with many
   * shaped pods listing them all costs a filter dump per link.
   */
  readonly listRedirects: (netns: NetnsPath, link?: string) => Op<ReadonlyArray<RedirectFilter>>
  /** Needs an ingress or clsact qdisc on `filter.link`. */
  readonly addRedirect: (netns: NetnsPath, filter: RedirectFilter) => Op<void>
  readonly deleteRedirect: (netns: NetnsPath, filter: RedirectFilter) => Op<void>

  // connection tracking
  /**
   * Deletes the tracked connections matching the filter and returns how many there were
   * (portmap flushes stale UDP flows of a new mapping). The mock tracks no connections.
   */
  readonly deleteConntrack: (netns: NetnsPath, filter: ConntrackFilter) => Op<number>

  // keyed nftables: tscni's own tables, per-pod state as set and map elements (nftSets.ts)
  /**
   * Creates a table with its sets, chains and rules, and the given elements, in one
   * transaction. AlreadyExists (nothing changed) when the table exists; Invalid for a
   * skeleton nftTableProblem refuses or an element nftElementProblem refuses.
   */
  readonly createNftTable: (netns: NetnsPath, table: NftTable, elements: ReadonlyArray<NftElement>) => Op<void>
  /**
   * Adds elements in one transaction, all or nothing: NotFound when the table or one of its
   * sets is missing, AlreadyExists when a key is there already (whoever owns it).
   */
  readonly addNftElements: (netns: NetnsPath, table: NftTable, elements: ReadonlyArray<NftElement>) => Op<void>
  /** The elements among `keys` that exist, with value and owner comment; NotFound when the table or a set is missing. */
  readonly getNftElements: (netns: NetnsPath, table: NftTableRef, keys: ReadonlyArray<NftElementKey>) => Op<ReadonlyArray<NftElement>>
  /**
   * Deletes elements in one transaction; NotFound (nothing deleted) when one of them, a set
   * or the table is missing. Keys as listings print them (nftKeyTextProblem: any skeleton).
   */
  readonly deleteNftElements: (netns: NetnsPath, table: NftTableRef, keys: ReadonlyArray<NftElementKey>) => Op<void>
  /** Every element of a table (GC, or a DEL that does not know its keys); NotFound when the table is missing. */
  readonly listNftElements: (netns: NetnsPath, table: NftTableRef) => Op<ReadonlyArray<NftElement>>
  /** One chain's rules, as nft prints them (compare counts, not text); NotFound when table or chain is missing. */
  readonly listNftChainRules: (netns: NetnsPath, table: NftTableRef, chain: string) => Op<ReadonlyArray<string>>
  /** The tables (of tscni's families) whose name starts with `prefix`: a listing of names only. */
  readonly listNftTables: (netns: NetnsPath, prefix: string) => Op<ReadonlyArray<NftTableRef>>
  /** Deletes a table and everything in it; NotFound when it does not exist. */
  readonly deleteNftTable: (netns: NetnsPath, table: NftTableRef) => Op<void>
  /**
   * Makes the table exactly `table` with `elements`, in one transaction: created when
   * missing, else deleted and made again inside that same transaction, so packets see the
   * old table or the new one, never neither (how the policy agent adopts its table at start).
   */
  readonly replaceNftTable: (netns: NetnsPath, table: NftTable, elements: ReadonlyArray<NftElement>) => Op<void>
  /**
   * Changes a table's sets, chains and elements in one transaction (NftChanges says the
   * order); all or nothing: NotFound for a missing table, set, chain or element,
   * AlreadyExists for a set, chain or element that is there already.
   */
  readonly changeNftTable: (netns: NetnsPath, table: NftTableRef, changes: NftChanges) => Op<void>

  // nftables rules found by comment: the layout before keyed tables, kept to remove what it left
  /** Adds all rules in one atomic transaction (tables and chains are created as needed). */
  readonly addFilterRules: (netns: NetnsPath, rules: ReadonlyArray<FilterRule>) => Op<void>
  /**
   * Removes every rule of one table whose comment is `comment`, and the chains and table it
   * leaves empty, atomically; only that table is read. Nothing to remove is not an error.
   */
  readonly deleteFilterRules: (netns: NetnsPath, table: NftTableRef, comment: string) => Op<void>
  /** The rules of one table ([] when it does not exist). */
  readonly listFilterRules: (netns: NetnsPath, table: NftTableRef) => Op<ReadonlyArray<FilterRule>>

  // iptables, for hosts that need it: tscni's own TSCNI- chains only
  /**
   * Adds one owner's rules to one table in one atomic transaction (`iptables-restore
   * --noflush`): the batch's chains are created when missing (an existing chain keeps its
   * rules) and hooked into their built-in chain once. Invalid (changing nothing) when the
   * batch breaks the rules of `iptablesBatchProblem`; NotFound when a rule jumps to a chain
   * that does not exist; Unsupported when the host has no iptables for the family.
   */
  readonly addIptablesRules: (netns: NetnsPath, batch: IptablesBatch) => Op<void>
  /**
   * Removes every rule of tscni's chains carrying the selector's comment, and the chains
   * that leaves empty together with the jumps into them, atomically. Nothing to remove is
   * not an error.
   */
  readonly deleteIptablesRules: (netns: NetnsPath, selector: IptablesSelector) => Op<void>
  /** tscni's chains in the table and their rules, with the jumps into them (reads the whole table: tests and the old layout only). */
  readonly listIptablesRules: (netns: NetnsPath, where: { readonly family: IpFamily; readonly table: IptablesTable }) => Op<IptablesListing>
  /**
   * Adds one owner's chains (IptablesPodChain) in one transaction, creating and hooking the
   * shared chains they are entered from when missing; returns the shared chains it created.
   * AlreadyExists (nothing changed) when one of the owner's chains exists; Invalid for a
   * batch iptablesPodBatchProblem refuses.
   */
  readonly addIptablesPodChains: (netns: NetnsPath, batch: IptablesPodBatch) => Op<ReadonlyArray<string>>
  /**
   * Removes a shared chain of tscni's and its jumps from built-in chains, in one transaction,
   * only when it holds no rule (iptables itself refuses to remove a chain that does, so a
   * rule added meanwhile keeps it). True when it was removed; false when it holds rules or
   * is not there.
   */
  readonly deleteIptablesChainIfEmpty: (
    netns: NetnsPath,
    where: { readonly family: IpFamily; readonly table: IptablesTable; readonly chain: IptablesChain }
  ) => Op<boolean>
  /**
   * Removes one owner's chains by name with the jumps into them, without reading the table;
   * chains already gone are skipped (nothing to remove is not an error).
   */
  readonly deleteIptablesPodChains: (netns: NetnsPath, selector: IptablesPodSelector) => Op<void>
  /** The named chains of tscni's and their rules (missing ones left out), each read on its own. */
  readonly listIptablesChains: (
    netns: NetnsPath,
    where: { readonly family: IpFamily; readonly table: IptablesTable; readonly chains: ReadonlyArray<string> }
  ) => Op<IptablesListing>
}

/** The kernel as steps see it. */
export class Backend extends Context.Service<Backend, BackendShape>()("tscni/Backend") {}
