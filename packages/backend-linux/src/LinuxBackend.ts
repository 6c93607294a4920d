import { Effect, Layer } from "effect"
import {
  Backend,
  BackendError,
  type BackendShape,
  type BackendErrorReason,
  type LinkInfo,
  aliasProblem,
  vlanIdProblem
} from "@tscni/backend"
import { kernelError, KernelCallFailed } from "./errors.ts"
import * as netns from "./netns.ts"
import * as nftables from "./nftables.ts"
import * as nftSets from "./nftSets.ts"
import * as iptables from "./iptables.ts"
import * as conntrack from "./conntrack.ts"
import { closeRouteSocket, namespacesWithSockets, netfilterSocket, routeSocket } from "./netlink/socket.ts"
import * as address from "./rtnl/address.ts"
import * as link from "./rtnl/link.ts"
import * as neigh from "./rtnl/neigh.ts"
import * as route from "./rtnl/route.ts"
import * as sysctl from "./sysctl.ts"
import * as tc from "./rtnl/tc.ts"

const FS_REASONS: Record<string, BackendErrorReason> = {
  ENOENT: "NotFound",
  EACCES: "PermissionDenied",
  EPERM: "PermissionDenied",
  EINVAL: "Invalid",
  EBUSY: "Busy",
  EEXIST: "AlreadyExists"
}

const errorCode = (error: unknown): string | undefined => {
  if (typeof error !== "object" || error === null || !("code" in error)) return undefined
  return typeof error.code === "string" ? error.code : undefined
}

/** The same failure, attributed to the Backend operation that ran into it. */
const asOperation = (operation: string, error: BackendError): BackendError => {
  if (error.operation === operation) return error
  const { reason, message, errno, netns } = error
  return new BackendError({
    operation,
    reason,
    message,
    ...(errno !== undefined ? { errno } : {}),
    ...(netns !== undefined ? { netns } : {})
  })
}

/**
 * Runs synchronous kernel work and turns whatever it throws into a BackendError, naming
 * the Backend operation (a failed lookup inside addAddress is addAddress's failure).
 */
const kernelCall = <A>(operation: string, work: () => A): Effect.Effect<A, BackendError> =>
  Effect.try({
    try: work,
    catch: (error) => {
      if (error instanceof KernelCallFailed) return asOperation(operation, error.error)
      const code = errorCode(error)
      return new BackendError({
        operation,
        reason: (code && FS_REASONS[code]) || "Unknown",
        ...(code ? { errno: code } : {}),
        message: `${operation}: ${error instanceof Error ? error.message : String(error)}`
      })
    }
  })

const findLink = (ns: string, name: string): LinkInfo => link.getLink(routeSocket(ns), ns, name)

const socketOf = routeSocket

/**
 * The links put in a group of their own for the moment, then the group deleted: one
 * unregister for all of them. The group is random in [2^24, 2^32) (people and tools number
 * theirs from 0 up), so no other link is in it; if the delete fails, each link gets its
 * own group back.
 */
const deleteLinksTogether = (ns: string, names: ReadonlyArray<string>): void => {
  const socket = socketOf(ns)
  const links = names.map((name) => findLink(ns, name))
  const group = 0x1000000 + Math.floor(Math.random() * (0x100000000 - 0x1000000))
  const regrouped: Array<{ readonly link: LinkInfo; readonly group: number }> = []
  try {
    for (const target of links) {
      const was = link.linkGroup(socket, target)
      link.setLinkGroup(socket, target, group)
      regrouped.push({ link: target, group: was })
    }
    link.deleteLinkGroup(socket, group, names.join(", "))
  } catch (error) {
    const unrestored: Array<string> = []
    for (const { link: target, group: was } of regrouped) {
      try {
        link.setLinkGroup(socket, target, was)
      } catch (restoreError) {
        // gone after all (a veth whose peer was deleted): nothing to give back
        if (!(restoreError instanceof KernelCallFailed && restoreError.error.reason === "NotFound")) unrestored.push(target.name)
      }
    }
    if (unrestored.length === 0 || !(error instanceof KernelCallFailed)) throw error
    throw new KernelCallFailed(new BackendError({ ...error.error, message: `${error.error.message}; ${unrestored.join(", ")} left in link group ${group}` }))
  }
}

const invalid = (operation: string, message: string) =>
  new KernelCallFailed(new BackendError({ operation, reason: "Invalid", message: `${operation}: ${message}` }))

const VLAN_FILTERING_UNSUPPORTED =
  "bridge VLAN filtering is not supported by this kernel (built without CONFIG_BRIDGE_VLAN_FILTERING)"

/** EOPNOTSUPP from a bridge VLAN request means the kernel was built without VLAN filtering. */
const vlanSupport = <A>(effect: Effect.Effect<A, BackendError>): Effect.Effect<A, BackendError> =>
  Effect.mapError(effect, (error) =>
    error.errno === "EOPNOTSUPP"
      ? new BackendError({
        operation: error.operation,
        reason: "Unsupported",
        errno: "EOPNOTSUPP",
        message: `${error.operation}: ${VLAN_FILTERING_UNSUPPORTED}`
      })
      : error
  )

const checkAlias = (operation: string, alias: string | undefined): void => {
  const problem = aliasProblem(alias)
  if (problem !== undefined) throw invalid(operation, problem)
}

const checkVid = (operation: string, vid: number): void => {
  const problem = vlanIdProblem(vid)
  if (problem !== undefined) throw invalid(operation, problem)
}

/** The VLANs the kernel reports for one link ([] for links that hold none). */
const vlansOf = (ns: string, target: LinkInfo, operation: string) =>
  link.bridgeVlans(socketOf(ns), operation).get(target.index) ?? []

/**
 * Closes every netlink socket and nft context held in a namespace other than the process's
 * own. A plugin process never needs this (it exits); a resident daemon calls it when no
 * request is running, since its sockets would otherwise keep deleted pod namespaces alive.
 */
export const releaseNamespaceResources = (): void => {
  for (const path of new Set([...namespacesWithSockets(), ...nftables.namespacesWithContexts()])) closeNamespaceResources(path)
}

/** The same for one namespace path: what a daemon does when the last call using a pod's namespace ends. */
export const closeNamespaceResources = (path: string): void => {
  closeRouteSocket(path)
  nftables.closeContext(path)
}

/** The Backend on the real kernel: rtnetlink over bun:ffi, /proc/sys, nftables, iptables-restore. */
export const makeLinuxBackend = (): BackendShape => ({
  createNetns: (name) => kernelCall("createNetns", () => netns.createNetns(name)),
  deleteNetns: (path) =>
    kernelCall("deleteNetns", () => {
      // our own sockets in it would keep the namespace (and its links) alive
      closeNamespaceResources(path)
      netns.deleteNetns(path)
    }),
  netnsExists: (path) => kernelCall("netnsExists", () => netns.isNetns(path)),

  listLinks: (ns) => kernelCall("listLinks", () => link.listLinks(socketOf(ns), ns)),
  getLink: (ns, name) => kernelCall("getLink", () => findLink(ns, name)),
  getLinkByIndex: (ns, index) => kernelCall("getLinkByIndex", () => link.getLinkByIndex(socketOf(ns), ns, index)),
  listBridgePorts: (ns, bridge) => kernelCall("listBridgePorts", () => link.listBridgePorts(socketOf(ns), ns, bridge)),
  createVeth: (request) =>
    kernelCall("createVeth", () => {
      netns.withNetnsFd(request.peerNetns, (peerFd) =>
        link.createLink(
          socketOf(request.netns),
          "createVeth",
          "veth",
          { name: request.name, mtu: request.mtu, mac: request.mac },
          { name: request.peerName, mtu: request.mtu, mac: request.peerMac, netnsFd: peerFd }
        )
      )
      return { link: findLink(request.netns, request.name), peer: findLink(request.peerNetns, request.peerName) }
    }),
  createLink: (request) =>
    Effect.gen(function* () {
      const op = "createLink"
      const create = kernelCall(op, () => {
        checkAlias(op, request.alias)
        if (request.vlanFiltering !== undefined && request.kind !== "bridge") {
          throw invalid(op, `vlanFiltering applies to bridges, not ${request.kind}`)
        }
        if ((request.vxlan !== undefined) !== (request.kind === "vxlan")) {
          throw invalid(op, request.kind === "vxlan" ? "a vxlan link needs its vxlan settings" : `vxlan settings apply to vxlan links, not ${request.kind}`)
        }
        const vxlan = request.vxlan
        link.createLink(
          socketOf(request.netns),
          op,
          request.kind,
          { name: request.name, mtu: request.mtu, mac: request.mac },
          undefined,
          {
            vlanFiltering: request.vlanFiltering,
            vxlan: vxlan === undefined ? undefined : {
              vni: vxlan.vni,
              port: vxlan.port,
              local: vxlan.local,
              learning: vxlan.learning === true,
              underlayIndex: vxlan.underlay === undefined ? undefined : findLink(request.netns, vxlan.underlay).index
            }
          }
        )
      })
      // the kernel registers the bridge, fails to switch filtering on and unregisters it again
      yield* request.vlanFiltering === true ? vlanSupport(create) : create
      if (request.alias !== undefined && request.alias !== "") {
        // RTM_NEWLINK ignores IFLA_IFALIAS when creating: set it after, or create nothing
        const alias = request.alias
        const { netns: ns, name } = request
        const undo = kernelCall(op, () => link.deleteLink(socketOf(ns), findLink(ns, name).index, name))
        yield* kernelCall(op, () => link.setLink(socketOf(ns), findLink(ns, name), { alias }, undefined)).pipe(
          // the link goes again; if that fails too, the error says so (the link is left)
          Effect.catchTag("BackendError", (error) =>
            undo.pipe(
              Effect.matchEffect({
                onSuccess: () => Effect.fail(error),
                onFailure: (left) =>
                  Effect.fail(new BackendError({ ...error, message: `${error.message}; removing ${name} again failed too (it is left): ${left.message}` }))
              })
            ))
        )
      }
      return yield* kernelCall(op, () => findLink(request.netns, request.name))
    }),
  deleteLink: (ns, name) => kernelCall("deleteLink", () => link.deleteLink(socketOf(ns), findLink(ns, name).index, name)),
  deleteLinksTogether: (ns, names) => kernelCall("deleteLinksTogether", () => deleteLinksTogether(ns, names)),
  setLink: (ns, name, changes) =>
    kernelCall("setLink", () => {
      const target = findLink(ns, name)
      const master = typeof changes.master === "string" ? findLink(ns, changes.master) : undefined
      checkAlias("setLink", changes.alias)
      // the kernel answers EOPNOTSUPP for these; say what is wrong instead, before changing anything
      if (master && master.kind !== "bridge") throw invalid("setLink", `${master.name} is not a bridge`)
      const willBePort = changes.master === null ? false : master !== undefined || target.master !== undefined
      if ((changes.hairpin !== undefined || changes.isolated !== undefined) && !willBePort) {
        throw invalid("setLink", `${name} is not a bridge port`)
      }
      link.setLink(socketOf(ns), target, changes, master?.index)
      if (changes.hairpin !== undefined || changes.isolated !== undefined) {
        link.setBridgePort(socketOf(ns), target, { hairpin: changes.hairpin, isolated: changes.isolated })
      }
      return findLink(ns, name)
    }),
  moveLink: (ns, name, toNetns, newName) =>
    kernelCall("moveLink", () => {
      const target = findLink(ns, name)
      // The kernel moves first and renames after: a taken name would leave the link moved
      // under its old name. Refuse up front instead.
      const arrivalName = newName ?? name
      // one lookup, not a dump of the target namespace (the host's grows with its pods)
      if (link.linkExists(socketOf(toNetns), toNetns, arrivalName)) {
        throw new KernelCallFailed(kernelError("moveLink", 17, `${arrivalName} exists in ${toNetns}`))
      }
      netns.withNetnsFd(toNetns, (fd) => link.moveLink(socketOf(ns), target, fd, newName))
      return findLink(toNetns, newName ?? name)
    }),

  listBridgeVlans: (ns, name) =>
    kernelCall("listBridgeVlans", () => vlansOf(ns, findLink(ns, name), "listBridgeVlans")),
  addBridgeVlan: (ns, name, vlan) =>
    vlanSupport(
      kernelCall("addBridgeVlan", () => {
        const target = findLink(ns, name)
        checkVid("addBridgeVlan", vlan.vid)
        // without a master the kernel answers EOPNOTSUPP, which would read as "no VLAN support"
        if (target.kind !== "bridge" && target.master === undefined) {
          throw invalid("addBridgeVlan", `${name} is neither a bridge nor a bridge port`)
        }
        link.changeBridgeVlan(socketOf(ns), "addBridgeVlan", true, target, vlan)
      })
    ),
  deleteBridgeVlan: (ns, name, vid) =>
    kernelCall("deleteBridgeVlan", () => {
      const target = findLink(ns, name)
      checkVid("deleteBridgeVlan", vid)
      // the kernel acknowledges deleting a VLAN that is not there; undo needs to know
      const existing = vlansOf(ns, target, "deleteBridgeVlan").find((v) => v.vid === vid)
      if (!existing) throw new KernelCallFailed(kernelError("deleteBridgeVlan", 2, `${name} has no VLAN ${vid}`))
      link.changeBridgeVlan(socketOf(ns), "deleteBridgeVlan", false, target, existing)
    }),

  listAddresses: (ns, linkName) =>
    kernelCall("listAddresses", () =>
      address.listAddresses(socketOf(ns), ns, linkName === undefined ? link.listLinks(socketOf(ns), ns) : [findLink(ns, linkName)])
    ),
  addAddress: (ns, linkName, cidr, options) =>
    kernelCall("addAddress", () => address.addAddress(socketOf(ns), findLink(ns, linkName), cidr, options?.noDad === true)),
  deleteAddress: (ns, linkName, cidr) =>
    kernelCall("deleteAddress", () => address.deleteAddress(socketOf(ns), findLink(ns, linkName), cidr)),

  listRoutes: (ns) => kernelCall("listRoutes", () => route.listRoutes(socketOf(ns), link.listLinks(socketOf(ns), ns))),
  lookupRoute: (ns, target) =>
    kernelCall("lookupRoute", () => route.lookupRoute(socketOf(ns), target, (index) => link.getLinkByIndex(socketOf(ns), ns, index).name)),
  listNeighbors: (ns, name) => kernelCall("listNeighbors", () => neigh.listNeighbors(socketOf(ns), name, findLink(ns, name).index)),
  setNeighbor: (ns, entry) => kernelCall("setNeighbor", () => neigh.setNeighbor(socketOf(ns), findLink(ns, entry.link).index, entry)),
  deleteNeighbor: (ns, entry) => kernelCall("deleteNeighbor", () => neigh.deleteNeighbor(socketOf(ns), findLink(ns, entry.link).index, entry)),
  listFdb: (ns, name) => kernelCall("listFdb", () => neigh.listFdb(socketOf(ns), name, findLink(ns, name).index)),
  setFdb: (ns, entry) => kernelCall("setFdb", () => neigh.setFdb(socketOf(ns), findLink(ns, entry.link).index, entry)),
  deleteFdb: (ns, entry) => kernelCall("deleteFdb", () => neigh.deleteFdb(socketOf(ns), findLink(ns, entry.link).index, entry)),
  addRoute: (ns, entry, options) =>
    kernelCall("addRoute", () =>
      route.addRoute(socketOf(ns), entry, entry.link !== undefined ? findLink(ns, entry.link).index : undefined, options?.append === true, options?.protocol)
    ),
  deleteRoute: (ns, entry) =>
    kernelCall("deleteRoute", () =>
      route.deleteRoute(socketOf(ns), entry, entry.link !== undefined ? findLink(ns, entry.link).index : undefined)
    ),

  readSysctl: (ns, key) => kernelCall("readSysctl", () => sysctl.readSysctl(ns, key)),
  writeSysctl: (ns, key, value) => kernelCall("writeSysctl", () => sysctl.writeSysctl(ns, key, value)),

  listQdiscs: (ns, linkName) => kernelCall("listQdiscs", () => tc.listQdiscs(socketOf(ns), findLink(ns, linkName))),
  addQdisc: (ns, request) => kernelCall("addQdisc", () => tc.addQdisc(socketOf(ns), findLink(ns, request.link), request)),
  deleteQdisc: (ns, linkName, parent) =>
    kernelCall("deleteQdisc", () => tc.deleteQdisc(socketOf(ns), findLink(ns, linkName), parent)),
  listRedirects: (ns, from) =>
    kernelCall("listRedirects", () =>
      from === undefined
        ? tc.listRedirects(socketOf(ns), link.listLinks(socketOf(ns), ns))
        : tc.listRedirectsFrom(socketOf(ns), findLink(ns, from), (index) => link.linkNameByIndex(socketOf(ns), index))
    ),
  addRedirect: (ns, filter) =>
    kernelCall("addRedirect", () => tc.addRedirect(socketOf(ns), findLink(ns, filter.link), findLink(ns, filter.toLink))),
  deleteRedirect: (ns, filter) =>
    kernelCall("deleteRedirect", () => tc.deleteRedirect(socketOf(ns), findLink(ns, filter.link), findLink(ns, filter.toLink))),

  deleteConntrack: (ns, filter) =>
    kernelCall("deleteConntrack", () => {
      const invalid = conntrack.invalidFilter(filter)
      if (invalid) throw invalid
      return conntrack.deleteConntrack(netfilterSocket(ns), filter)
    }),

  addFilterRules: (ns, rules) =>
    kernelCall("addFilterRules", () => {
      if (rules.length > 0) nftables.runNft(ns, "addFilterRules", nftables.addRulesScript(rules))
    }),
  deleteFilterRules: (ns, table, comment) =>
    kernelCall("deleteFilterRules", () => {
      nftables.deleteRules(ns, table, comment)
    }),
  listFilterRules: (ns, table) =>
    kernelCall("listFilterRules", () => nftables.listRules(ns, "listFilterRules", table).rules.map(({ handle: _handle, ...rule }) => rule)),

  createNftTable: (ns, table, elements) => kernelCall("createNftTable", () => nftSets.createTable(ns, table, elements)),
  addNftElements: (ns, table, elements) => kernelCall("addNftElements", () => nftSets.addElements(ns, table, elements)),
  getNftElements: (ns, table, keys) => kernelCall("getNftElements", () => nftSets.getElements(ns, table, keys)),
  deleteNftElements: (ns, table, keys) => kernelCall("deleteNftElements", () => nftSets.deleteElements(ns, table, keys)),
  listNftElements: (ns, table) => kernelCall("listNftElements", () => nftSets.listElements(ns, table)),
  listNftChainRules: (ns, table, chain) => kernelCall("listNftChainRules", () => nftSets.listChainRules(ns, table, chain)),
  listNftTables: (ns, prefix) => kernelCall("listNftTables", () => nftSets.listTables(ns, prefix)),
  deleteNftTable: (ns, table) => kernelCall("deleteNftTable", () => nftSets.deleteTable(ns, table)),
  replaceNftTable: (ns, table, elements) => kernelCall("replaceNftTable", () => nftSets.replaceTable(ns, table, elements)),
  changeNftTable: (ns, table, changes) => kernelCall("changeNftTable", () => nftSets.changeTable(ns, table, changes)),

  addIptablesRules: iptables.addIptablesRules,
  deleteIptablesRules: iptables.deleteIptablesRules,
  listIptablesRules: iptables.listIptablesRules,
  addIptablesPodChains: iptables.addIptablesPodChains,
  deleteIptablesChainIfEmpty: iptables.deleteIptablesChainIfEmpty,
  deleteIptablesPodChains: iptables.deleteIptablesPodChains,
  listIptablesChains: iptables.listIptablesChains
})

/** The Backend service on the real kernel, what the plugins' `main` provides outside tests. */
export const layer: Layer.Layer<Backend> = Layer.sync(Backend)(makeLinuxBackend)
