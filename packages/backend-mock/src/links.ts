import {
  type BackendError,
  type CreateLinkRequest,
  type CreateVethRequest,
  type LinkChanges,
  type LinkInfo,
  type LinkKind,
  aliasProblem,
  type NetnsPath
} from "@tscni/backend"
import { Effect } from "effect"
import { isAssignableMac, parseMac } from "@tscni/ip"
import { bringDown, bringUp, destroyLink, detachLink, releasePort } from "./lifecycle.ts"
import {
  addLinkSysctls,
  allocateIndex,
  defaultVlans,
  fail,
  findLink,
  generateMac,
  type KernelState,
  type LinkState,
  linksInOrder,
  linkSysctls,
  type NetnsState,
  removeLinkSysctls,
  requireLink,
  requireNetns,
  toLinkInfo,
  validateLinkName
} from "./state.ts"

/** What the mock (and LinuxBackend) say when the kernel has no bridge VLAN filtering. */
export const VLAN_FILTERING_UNSUPPORTED =
  "bridge VLAN filtering is not supported by this kernel (built without CONFIG_BRIDGE_VLAN_FILTERING)"

/** The kernel's default MTU for the links the mock can create. */
const DEFAULT_MTU = 1500
/** The kernel's default transmit queue length. */
const DEFAULT_TXQLEN = 1000
/** The MTU range the mock accepts: IPv4's minimum up to the 16-bit maximum. */
const MIN_MTU = 68
/** The largest MTU the mock accepts (the 16-bit maximum), as the kernel refuses larger. */
const MAX_MTU = 65535

const validateMtu = (operation: string, mtu: number | undefined): Effect.Effect<void, BackendError> =>
  mtu === undefined || (Number.isInteger(mtu) && mtu >= MIN_MTU && mtu <= MAX_MTU)
    ? Effect.void
    : fail(operation, "Invalid", `mtu ${mtu} is outside ${MIN_MTU}..${MAX_MTU}`, "EINVAL")

/** Normalises a requested MAC or fails: Invalid when malformed, multicast or all-zero. */
const validateMac = (operation: string, mac: string | undefined): Effect.Effect<string | undefined, BackendError> => {
  if (mac === undefined) return Effect.succeed(undefined)
  const parsed = parseMac(mac)
  if (parsed === undefined) return fail(operation, "Invalid", `invalid MAC address ${JSON.stringify(mac)}`, "EINVAL")
  if (!isAssignableMac(parsed)) {
    return fail(operation, "Invalid", `MAC address ${parsed} is multicast or zero`, "EADDRNOTAVAIL")
  }
  return Effect.succeed(parsed)
}

/** The kernel keeps at most IFALIASZ-1 bytes (ERANGE from the attribute policy beyond). */
const validateAlias = (operation: string, alias: string | undefined): Effect.Effect<void, BackendError> => {
  const problem = aliasProblem(alias)
  return problem === undefined ? Effect.void : fail(operation, "Invalid", problem, "ERANGE")
}

const nameTaken = (operation: string, ns: NetnsState, name: string): Effect.Effect<void, BackendError> =>
  findLink(ns, name) === undefined
    ? Effect.void
    : fail(operation, "AlreadyExists", `link ${name} already exists in ${ns.path}`, "EEXIST")

const newLink = (
  state: KernelState,
  ns: NetnsState,
  name: string,
  kind: LinkKind,
  mtu: number | undefined,
  mac: string | undefined
): LinkState => {
  const link: LinkState = {
    index: allocateIndex(ns),
    name,
    kind,
    up: false,
    mtu: mtu ?? DEFAULT_MTU,
    mac: mac ?? generateMac(state),
    txqlen: DEFAULT_TXQLEN,
    promisc: false,
    allmulti: false,
    master: undefined,
    bridgePort: undefined,
    peer: undefined,
    alias: undefined,
    vlanFiltering: kind === "bridge" ? false : undefined,
    vlans: kind === "bridge" ? defaultVlans(state) : [],
    vxlan: undefined
  }
  ns.links.set(link.index, link)
  addLinkSysctls(ns, name)
  return link
}

const validateChanges = (
  ns: NetnsState,
  link: LinkState,
  changes: LinkChanges
): Effect.Effect<{ readonly mac: string | undefined; readonly master: LinkState | null | undefined }, BackendError> =>
  Effect.gen(function* () {
    const op = "setLink"
    yield* validateMtu(op, changes.mtu)
    const mac = yield* validateMac(op, changes.mac)
    if (mac !== undefined && link.kind === "loopback") {
      return yield* fail(op, "Unsupported", "the loopback MAC cannot be changed", "EOPNOTSUPP")
    }
    if (changes.txqlen !== undefined && !(Number.isInteger(changes.txqlen) && changes.txqlen >= 0)) {
      return yield* fail(op, "Invalid", `invalid txqlen ${changes.txqlen}`, "EINVAL")
    }
    yield* validateAlias(op, changes.alias)
    let master: LinkState | null | undefined = undefined
    if (changes.master === null) master = null
    else if (changes.master !== undefined) {
      const bridge = yield* requireLink(ns, op, changes.master)
      if (bridge.kind !== "bridge") {
        return yield* fail(op, "Invalid", `master ${bridge.name} is not a bridge`, "EOPNOTSUPP")
      }
      if (bridge.index === link.index || link.kind === "bridge" || link.kind === "loopback") {
        return yield* fail(op, "Invalid", `${link.name} (${link.kind}) cannot be a port of ${bridge.name}`, "EINVAL")
      }
      master = bridge
    }
    const willHaveMaster = master === undefined ? link.master !== undefined : master !== null
    if ((changes.hairpin !== undefined || changes.isolated !== undefined) && !willHaveMaster) {
      return yield* fail(op, "Invalid", `${link.name} is not a bridge port`, "EOPNOTSUPP")
    }
    return { mac, master }
  })

/** Link operations of the mock: list, get, create (veth, bridge, dummy, ifb), delete, set, move. */
export const linkOperations = (state: KernelState) => ({
  listLinks: (netns: NetnsPath): Effect.Effect<ReadonlyArray<LinkInfo>, BackendError> =>
    Effect.map(requireNetns(state, "listLinks", netns), (ns) => linksInOrder(ns).map((l) => toLinkInfo(ns, l))),

  getLink: (netns: NetnsPath, name: string): Effect.Effect<LinkInfo, BackendError> =>
    Effect.gen(function* () {
      const ns = yield* requireNetns(state, "getLink", netns)
      return toLinkInfo(ns, yield* requireLink(ns, "getLink", name))
    }),

  getLinkByIndex: (netns: NetnsPath, index: number): Effect.Effect<LinkInfo, BackendError> =>
    Effect.gen(function* () {
      const ns = yield* requireNetns(state, "getLinkByIndex", netns)
      const link = ns.links.get(index)
      if (link === undefined) return yield* fail("getLinkByIndex", "NotFound", `no link with ifindex ${index} in ${netns}`, "ENODEV")
      return toLinkInfo(ns, link)
    }),

  listBridgePorts: (netns: NetnsPath, bridge: string): Effect.Effect<ReadonlyArray<LinkInfo>, BackendError> =>
    Effect.gen(function* () {
      const ns = yield* requireNetns(state, "listBridgePorts", netns)
      const master = yield* requireLink(ns, "listBridgePorts", bridge)
      return linksInOrder(ns).filter((link) => link.master === master.index).map((link) => toLinkInfo(ns, link))
    }),

  createVeth: (
    request: CreateVethRequest
  ): Effect.Effect<{ readonly link: LinkInfo; readonly peer: LinkInfo }, BackendError> =>
    Effect.gen(function* () {
      const op = "createVeth"
      const ns = yield* requireNetns(state, op, request.netns)
      const peerNs = yield* requireNetns(state, op, request.peerNetns)
      yield* validateLinkName(op, request.name)
      yield* validateLinkName(op, request.peerName)
      yield* validateMtu(op, request.mtu)
      const mac = yield* validateMac(op, request.mac)
      const peerMac = yield* validateMac(op, request.peerMac)
      yield* nameTaken(op, ns, request.name)
      yield* nameTaken(op, peerNs, request.peerName)
      if (ns === peerNs && request.name === request.peerName) {
        return yield* fail(op, "AlreadyExists", `both ends are named ${request.name}`, "EEXIST")
      }
      // the kernel registers the peer first
      const peer = newLink(state, peerNs, request.peerName, "veth", request.mtu, peerMac)
      const link = newLink(state, ns, request.name, "veth", request.mtu, mac)
      link.peer = { netns: peerNs.path, index: peer.index }
      peer.peer = { netns: ns.path, index: link.index }
      return { link: toLinkInfo(ns, link), peer: toLinkInfo(peerNs, peer) }
    }),

  createLink: (request: CreateLinkRequest): Effect.Effect<LinkInfo, BackendError> =>
    Effect.gen(function* () {
      const op = "createLink"
      const ns = yield* requireNetns(state, op, request.netns)
      if (request.kind !== "bridge" && request.kind !== "dummy" && request.kind !== "ifb" && request.kind !== "vxlan") {
        return yield* fail(op, "Unsupported", `unknown link kind ${String(request.kind)}`, "EOPNOTSUPP")
      }
      if ((request.vxlan !== undefined) !== (request.kind === "vxlan")) {
        const message = request.kind === "vxlan" ? "a vxlan link needs its vxlan settings" : `vxlan settings apply to vxlan links, not ${request.kind}`
        return yield* fail(op, "Invalid", message, "EINVAL")
      }
      const vxlan = request.vxlan
      const underlay = vxlan?.underlay === undefined ? undefined : yield* requireLink(ns, op, vxlan.underlay)
      if (vxlan !== undefined && (!Number.isInteger(vxlan.vni) || vxlan.vni < 0 || vxlan.vni > 0xffffff)) {
        return yield* fail(op, "Invalid", `VXLAN id ${vxlan.vni} is out of range`, "ERANGE")
      }
      yield* validateLinkName(op, request.name)
      yield* validateMtu(op, request.mtu)
      const mac = yield* validateMac(op, request.mac)
      yield* validateAlias(op, request.alias)
      if (request.vlanFiltering !== undefined && request.kind !== "bridge") {
        return yield* fail(op, "Invalid", `vlanFiltering applies to bridges, not ${request.kind}`, "EINVAL")
      }
      yield* nameTaken(op, ns, request.name)
      if (request.vlanFiltering === true && state.vlanFiltering === "unsupported") {
        // the kernel registers the bridge, fails to switch filtering on and unregisters it
        return yield* fail(op, "Unsupported", VLAN_FILTERING_UNSUPPORTED, "EOPNOTSUPP")
      }
      const link = newLink(state, ns, request.name, request.kind, request.mtu, mac)
      if (request.alias !== undefined && request.alias !== "") link.alias = request.alias
      if (request.vlanFiltering === true) link.vlanFiltering = true
      if (vxlan !== undefined) {
        link.vxlan = {
          vni: vxlan.vni,
          port: vxlan.port,
          ...(vxlan.local === undefined ? {} : { local: vxlan.local }),
          learning: vxlan.learning === true,
          ...(underlay === undefined ? {} : { underlayIndex: underlay.index })
        }
      }
      return toLinkInfo(ns, link)
    }),

  deleteLink: (netns: NetnsPath, name: string): Effect.Effect<void, BackendError> =>
    Effect.gen(function* () {
      const ns = yield* requireNetns(state, "deleteLink", netns)
      const link = yield* requireLink(ns, "deleteLink", name)
      if (link.kind === "loopback") {
        return yield* fail("deleteLink", "Unsupported", "the loopback link cannot be deleted", "EOPNOTSUPP")
      }
      destroyLink(state, ns, link)
    }),

  deleteLinksTogether: (netns: NetnsPath, names: ReadonlyArray<string>): Effect.Effect<void, BackendError> =>
    Effect.gen(function* () {
      const ns = yield* requireNetns(state, "deleteLinksTogether", netns)
      const doomed: Array<LinkState> = []
      // all or none: every name is checked before any link goes
      for (const name of names) doomed.push(yield* requireLink(ns, "deleteLinksTogether", name))
      if (doomed.some((link) => link.kind === "loopback")) {
        return yield* fail("deleteLinksTogether", "Unsupported", "the loopback link cannot be deleted", "EOPNOTSUPP")
      }
      // a veth's peer may be among them, and already gone with its other end
      for (const link of doomed) if (ns.links.get(link.index) === link) destroyLink(state, ns, link)
    }),

  setLink: (netns: NetnsPath, name: string, changes: LinkChanges): Effect.Effect<LinkInfo, BackendError> =>
    Effect.gen(function* () {
      const ns = yield* requireNetns(state, "setLink", netns)
      const link = yield* requireLink(ns, "setLink", name)
      const { mac, master } = yield* validateChanges(ns, link, changes)
      // everything is validated: apply in the order the kernel's do_setlink does
      if (mac !== undefined) link.mac = mac
      if (changes.mtu !== undefined) link.mtu = changes.mtu
      if (changes.txqlen !== undefined) link.txqlen = changes.txqlen
      if (changes.promisc !== undefined) link.promisc = changes.promisc
      if (changes.allmulti !== undefined) link.allmulti = changes.allmulti
      if (changes.alias !== undefined) link.alias = changes.alias === "" ? undefined : changes.alias
      if (master === null) releasePort(link)
      else if (master !== undefined && link.master !== master.index) {
        // a new master: released from the old one (flags and VLANs go), joined fresh
        releasePort(link)
        link.master = master.index
        link.bridgePort = { hairpin: false, isolated: false }
        link.vlans = defaultVlans(state)
      }
      if (link.bridgePort !== undefined) {
        link.bridgePort = {
          hairpin: changes.hairpin ?? link.bridgePort.hairpin,
          isolated: changes.isolated ?? link.bridgePort.isolated
        }
      }
      if (changes.up === true) bringUp(ns, link)
      if (changes.up === false) bringDown(ns, link)
      return toLinkInfo(ns, link)
    }),

  moveLink: (
    netns: NetnsPath,
    name: string,
    toNetns: NetnsPath,
    newName?: string
  ): Effect.Effect<LinkInfo, BackendError> =>
    Effect.gen(function* () {
      const op = "moveLink"
      const ns = yield* requireNetns(state, op, netns)
      const link = yield* requireLink(ns, op, name)
      const target = yield* requireNetns(state, op, toNetns)
      const targetName = newName ?? link.name
      yield* validateLinkName(op, targetName)
      if (link.kind === "loopback" || link.kind === "bridge") {
        return yield* fail(op, "Invalid", `a ${link.kind} link cannot change namespace`, "EINVAL")
      }
      if (target === ns) {
        // same namespace: only a rename, which the kernel refuses while the link is up
        if (targetName === link.name) return toLinkInfo(ns, link)
        yield* nameTaken(op, ns, targetName)
        if (link.up) return yield* fail(op, "Busy", `${link.name} must be down to be renamed`, "EBUSY")
        const values = linkSysctls(link.name).map(([key]) => ns.sysctls.get(key))
        removeLinkSysctls(ns, link.name)
        link.name = targetName
        linkSysctls(targetName).forEach(([key, fallback], i) => ns.sysctls.set(key, values[i] ?? fallback))
        return toLinkInfo(ns, link)
      }
      yield* nameTaken(op, target, targetName)
      // leaving a namespace: down, no addresses, routes, qdiscs or master; sysctls start over
      detachLink(ns, link)
      ns.links.delete(link.index)
      link.index = allocateIndex(target, link.index)
      link.name = targetName
      target.links.set(link.index, link)
      addLinkSysctls(target, targetName)
      if (link.peer !== undefined) {
        const peer = state.namespaces.get(link.peer.netns)?.links.get(link.peer.index)
        if (peer !== undefined) peer.peer = { netns: target.path, index: link.index }
      }
      return toLinkInfo(target, link)
    })
})
