import { type BackendError, type BackendErrorReason, type BackendShape, HOST_NETNS } from "@tscni/backend"
import { Effect } from "effect"
import { addressOperations } from "./addresses.ts"
import { type MockCall, makeFaults } from "./faults.ts"
import { filterOperations } from "./filters.ts"
import { nftSetOperations } from "./nftSets.ts"
import { iptablesOperations } from "./iptables.ts"
import { bringUp } from "./lifecycle.ts"
import { linkOperations } from "./links.ts"
import { netnsOperations } from "./netns.ts"
import { neighborOperations } from "./neighbors.ts"
import { routeOperations } from "./routes.ts"
import { diffSnapshots, type KernelSnapshot, takeSnapshot } from "./snapshot.ts"
import { type BridgeVlanSupport, type KernelState, newNetns } from "./state.ts"
import { sysctlOperations } from "./sysctls.ts"
import { tcOperations } from "./tc.ts"
import { vlanOperations } from "./vlans.ts"
import { conntrackOperations } from "./conntrack.ts"

/*
 * How faithful the model is, and where it stops (the contract suite pins the rest):
 * - lo: in a new namespace it is down with no address; up adds 127.0.0.1/8 and ::1/128
 *   (+ the `::1 dev lo metric 256` route); down keeps 127.0.0.1/8 and drops ::1, as Linux.
 * - Down links: every route through them is flushed (both families) and their IPv6
 *   addresses are removed (keep_addr_on_down=0); IPv4 addresses stay.
 * - Connected routes are real routes: `subnet dev X scope link src A` for IPv4 (none for
 *   /32 or lo), `prefix dev X metric 256` for IPv6; they can be deleted.
 * - Listing routes: every route names its device (a gateway route reports the link the
 *   gateway resolved through), IPv6 routes always report scope universe and a metric
 *   (1024 by default), IPv4 routes omit metric 0, `table` appears only when not main.
 * - Gateways must be reachable through a route without gateway on an up link (or be a
 *   local address); `link` + `scope: "link"` (or a fe80:: gateway with `link`) is on-link.
 *   IPv4 dev routes need the device up (ENETDOWN), IPv6 ones do not.
 * - Not modelled: the local table, IPv6 link-local autoconfiguration (no fe80:: addresses
 *   appear), DAD, carrier, default root qdiscs (noqueue/fq_codel have handle 0 and are
 *   never listed, on Linux too), secondary-address promotion, bridge MTU following its
 *   ports, nft rule parsing, netdev chains following their device.
 * - Keyed nftables tables: the skeleton is kept as given (rules unparsed), elements by
 *   their key as given (keys must be canonical, as nft prints them, so the two agree).
 * - iptables: tables per namespace and family, created with their built-in chains on first
 *   use and never removed (as with iptables); rule arguments are kept as given, not
 *   normalised as iptables-save prints them; a jump to a missing chain is NotFound.
 * - Routes carry a protocol: connected routes are `kernel`, added ones `boot` (not listed).
 * - Aliases survive moves (as the kernel's ifalias does); "" clears one.
 * - Bridge VLANs (option `vlanFiltering`): when supported, a new bridge and a new port get
 *   VLAN 1 pvid untagged, a port's VLANs go when it leaves its bridge; when unsupported,
 *   creating a bridge with vlanFiltering: true and adding a VLAN fail with Unsupported and
 *   change nothing, and listings are empty. Filtering on/off does not change what can be
 *   configured (the kernel lets you set port VLANs either way).
 * - A redirect whose target link is deleted disappears (the kernel keeps a dangling filter).
 * - moveLink keeps the ifindex when it is free in the target namespace, as the kernel does.
 */

/** What a test can do to the mock besides calling the Backend: look, compare, break it. */
export interface MockControl {
  readonly snapshot: () => KernelSnapshot
  /** human-readable lines describing every difference; [] when equal */
  readonly diff: (before: KernelSnapshot, after: KernelSnapshot) => ReadonlyArray<string>
  /**
   * the n-th Backend call from now (1-based, counting every operation incl. reads) fails
   * with reason "Injected" (or the given reason)
   */
  readonly failNth: (n: number, reason?: BackendErrorReason) => void
  /** every call for which the predicate is true fails (reason "Injected" unless given) */
  readonly failWhen: (predicate: (call: MockCall) => boolean, reason?: BackendErrorReason) => void
  readonly clearFaults: () => void
  readonly calls: () => ReadonlyArray<MockCall>
  /** a fault fires BEFORE the operation changes anything */
}

/** How the modelled kernel is built. */
export interface MockKernelOptions {
  /** whether bridge VLAN filtering is available (default "supported") */
  readonly vlanFiltering?: BridgeVlanSupport
}

/** A kernel as a freshly booted host has it: the host namespace with `lo` up. */
export const bootKernel = (options: MockKernelOptions = {}): KernelState => {
  const host = newNetns(HOST_NETNS)
  const lo = host.links.get(1)
  if (lo !== undefined) bringUp(host, lo)
  return { namespaces: new Map([[HOST_NETNS, host]]), macCounter: 0, vlanFiltering: options.vlanFiltering ?? "supported" }
}

/**
 * A new, independent in-memory kernel and its control handle. Every operation is logged
 * and checked against armed faults before it runs, so an injected failure never leaves a
 * partial change behind.
 */
export const makeMockBackend = (
  options: MockKernelOptions = {}
): { readonly backend: BackendShape; readonly control: MockControl } => {
  const state = bootKernel(options)
  const faults = makeFaults()

  const instrument =
    <A extends ReadonlyArray<unknown>, R>(operation: string, run: (...args: A) => Effect.Effect<R, BackendError>) =>
    (...args: A): Effect.Effect<R, BackendError> =>
      Effect.suspend(() => {
        const fault = faults.intercept({ operation, args: structuredClone(args) })
        return fault === undefined ? run(...args) : Effect.fail(fault)
      }).pipe(Effect.withSpan(`MockBackend.${operation}`))

  const netns = netnsOperations(state)
  const links = linkOperations(state)
  const addresses = addressOperations(state)
  const routes = routeOperations(state)
  const sysctls = sysctlOperations(state)
  const tc = tcOperations(state)
  const filters = filterOperations(state)
  const nftSets = nftSetOperations(state)
  const iptables = iptablesOperations(state)
  const vlans = vlanOperations(state)
  const conntrack = conntrackOperations(state)
  const neighbors = neighborOperations(state)

  const backend: BackendShape = {
    createNetns: instrument("createNetns", netns.createNetns),
    deleteNetns: instrument("deleteNetns", netns.deleteNetns),
    netnsExists: instrument("netnsExists", netns.netnsExists),
    listLinks: instrument("listLinks", links.listLinks),
    getLinkByIndex: instrument("getLinkByIndex", links.getLinkByIndex),
    listBridgePorts: instrument("listBridgePorts", links.listBridgePorts),
    getLink: instrument("getLink", links.getLink),
    createVeth: instrument("createVeth", links.createVeth),
    createLink: instrument("createLink", links.createLink),
    deleteLink: instrument("deleteLink", links.deleteLink),
    deleteLinksTogether: instrument("deleteLinksTogether", links.deleteLinksTogether),
    setLink: instrument("setLink", links.setLink),
    moveLink: instrument("moveLink", links.moveLink),
    listBridgeVlans: instrument("listBridgeVlans", vlans.listBridgeVlans),
    addBridgeVlan: instrument("addBridgeVlan", vlans.addBridgeVlan),
    deleteBridgeVlan: instrument("deleteBridgeVlan", vlans.deleteBridgeVlan),
    listAddresses: instrument("listAddresses", addresses.listAddresses),
    addAddress: instrument("addAddress", addresses.addAddress),
    deleteAddress: instrument("deleteAddress", addresses.deleteAddress),
    listRoutes: instrument("listRoutes", routes.listRoutes),
    lookupRoute: instrument("lookupRoute", routes.lookupRoute),
    addRoute: instrument("addRoute", routes.addRoute),
    deleteRoute: instrument("deleteRoute", routes.deleteRoute),
    listNeighbors: instrument("listNeighbors", neighbors.listNeighbors),
    setNeighbor: instrument("setNeighbor", neighbors.setNeighbor),
    deleteNeighbor: instrument("deleteNeighbor", neighbors.deleteNeighbor),
    listFdb: instrument("listFdb", neighbors.listFdb),
    setFdb: instrument("setFdb", neighbors.setFdb),
    deleteFdb: instrument("deleteFdb", neighbors.deleteFdb),
    readSysctl: instrument("readSysctl", sysctls.readSysctl),
    writeSysctl: instrument("writeSysctl", sysctls.writeSysctl),
    listQdiscs: instrument("listQdiscs", tc.listQdiscs),
    addQdisc: instrument("addQdisc", tc.addQdisc),
    deleteQdisc: instrument("deleteQdisc", tc.deleteQdisc),
    listRedirects: instrument("listRedirects", tc.listRedirects),
    addRedirect: instrument("addRedirect", tc.addRedirect),
    deleteRedirect: instrument("deleteRedirect", tc.deleteRedirect),
    deleteConntrack: instrument("deleteConntrack", conntrack.deleteConntrack),
    addFilterRules: instrument("addFilterRules", filters.addFilterRules),
    deleteFilterRules: instrument("deleteFilterRules", filters.deleteFilterRules),
    listFilterRules: instrument("listFilterRules", filters.listFilterRules),
    addIptablesRules: instrument("addIptablesRules", iptables.addIptablesRules),
    deleteIptablesRules: instrument("deleteIptablesRules", iptables.deleteIptablesRules),
    listIptablesRules: instrument("listIptablesRules", iptables.listIptablesRules),
    addIptablesPodChains: instrument("addIptablesPodChains", iptables.addIptablesPodChains),
    deleteIptablesChainIfEmpty: instrument("deleteIptablesChainIfEmpty", iptables.deleteIptablesChainIfEmpty),
    deleteIptablesPodChains: instrument("deleteIptablesPodChains", iptables.deleteIptablesPodChains),
    listIptablesChains: instrument("listIptablesChains", iptables.listIptablesChains),
    createNftTable: instrument("createNftTable", nftSets.createNftTable),
    addNftElements: instrument("addNftElements", nftSets.addNftElements),
    getNftElements: instrument("getNftElements", nftSets.getNftElements),
    deleteNftElements: instrument("deleteNftElements", nftSets.deleteNftElements),
    listNftElements: instrument("listNftElements", nftSets.listNftElements),
    listNftChainRules: instrument("listNftChainRules", nftSets.listNftChainRules),
    listNftTables: instrument("listNftTables", nftSets.listNftTables),
    deleteNftTable: instrument("deleteNftTable", nftSets.deleteNftTable),
    replaceNftTable: instrument("replaceNftTable", nftSets.replaceNftTable),
    changeNftTable: instrument("changeNftTable", nftSets.changeNftTable)
  }

  const control: MockControl = {
    snapshot: () => takeSnapshot(state),
    diff: diffSnapshots,
    failNth: faults.failNth,
    failWhen: faults.failWhen,
    clearFaults: faults.clearFaults,
    calls: faults.calls
  }
  return { backend, control }
}
