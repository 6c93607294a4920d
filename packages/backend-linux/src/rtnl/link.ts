import type { BridgeVlan, LinkChanges, LinkInfo, LinkKind, VxlanInfo } from "@tscni/backend"
import { formatIp, fromBytes, parseIp, toBytes } from "@tscni/ip"
import { kernelError, KernelCallFailed } from "../errors.ts"
import {
  attrString,
  attrU32,
  attrU8,
  AttributeWriter,
  decodeAttributeList,
  decodeAttributes,
  NLM_F_CREATE,
  NLM_F_EXCL,
  type NetlinkMessage
} from "../netlink/message.ts"
import type { RouteSocket } from "../netlink/socket.ts"

/** rtnetlink message type creating a link; also the type of each entry in a link dump. */
export const RTM_NEWLINK = 16
/** rtnetlink message type deleting a link (or, with AF_BRIDGE, one of its VLANs). */
export const RTM_DELLINK = 17
/** rtnetlink message type getting one link by name, or dumping them all. */
export const RTM_GETLINK = 18
/** rtnetlink message type changing an existing link (state, MTU, master, bridge VLANs). */
export const RTM_SETLINK = 19

const IFLA_ADDRESS = 1
const IFLA_IFNAME = 3
const IFLA_MTU = 4
const IFLA_LINK = 5
const IFLA_MASTER = 10
const IFLA_TXQLEN = 13
const IFLA_PROTINFO = 12
const IFLA_LINKINFO = 18
const IFLA_IFALIAS = 20
const IFLA_AF_SPEC = 26
const IFLA_NET_NS_FD = 28
const IFLA_GROUP = 27
const IFLA_EXT_MASK = 29
const IFLA_INFO_KIND = 1
const IFLA_INFO_DATA = 2
const IFLA_INFO_SLAVE_KIND = 4
const IFLA_INFO_SLAVE_DATA = 5
const VETH_INFO_PEER = 1
const IFLA_BRPORT_MODE = 4
const IFLA_BRPORT_ISOLATED = 33
const IFLA_BR_VLAN_FILTERING = 7
const IFLA_BRIDGE_FLAGS = 0
const IFLA_BRIDGE_VLAN_INFO = 2
const BRIDGE_FLAGS_SELF = 2
const BRIDGE_VLAN_INFO_PVID = 0x2
const BRIDGE_VLAN_INFO_UNTAGGED = 0x4
const RTEXT_FILTER_BRVLAN = 0x2
const IFLA_VXLAN_ID = 1
const IFLA_VXLAN_LINK = 3
const IFLA_VXLAN_LOCAL = 4
const IFLA_VXLAN_LEARNING = 7
const IFLA_VXLAN_PORT = 15
const IFLA_VXLAN_LOCAL6 = 17
const AF_BRIDGE = 7

const IFF_UP = 0x1
const IFF_LOOPBACK = 0x8
const IFF_PROMISC = 0x100
const IFF_ALLMULTI = 0x200

const AF_UNSPEC = 0
const IFINFOMSG_LENGTH = 16

/** struct ifinfomsg */
export const ifinfomsg = (index = 0, flags = 0, change = 0, family = AF_UNSPEC): Uint8Array => {
  const header = new Uint8Array(IFINFOMSG_LENGTH)
  const view = new DataView(header.buffer)
  view.setUint8(0, family)
  view.setInt32(4, index, true)
  view.setUint32(8, flags, true)
  view.setUint32(12, change, true)
  return header
}

/** The kernel's MAC bytes in the lower-case colon form LinkInfo reports. */
export const macToString = (bytes: Uint8Array): string =>
  Array.from(bytes, (byte) => byte.toString(16).padStart(2, "0")).join(":")

/** A colon-form MAC back into the bytes IFLA_ADDRESS takes. */
export const macToBytes = (mac: string): Uint8Array => Uint8Array.from(mac.split(":"), (part) => parseInt(part, 16))

const KINDS: Record<string, LinkKind> = { veth: "veth", bridge: "bridge", dummy: "dummy", ifb: "ifb", vxlan: "vxlan" }

/** A VXLAN device's settings from its IFLA_INFO_DATA (the port is big-endian on the wire). */
const vxlanInfo = (data: Uint8Array): VxlanInfo => {
  const attributes = decodeAttributes(data)
  const port = attributes.get(IFLA_VXLAN_PORT)
  const local = attributes.get(IFLA_VXLAN_LOCAL) ?? attributes.get(IFLA_VXLAN_LOCAL6)
  const underlayIndex = attrU32(attributes, IFLA_VXLAN_LINK)
  return {
    vni: attrU32(attributes, IFLA_VXLAN_ID) ?? 0,
    port: port !== undefined && port.byteLength >= 2 ? (port[0]! << 8) | port[1]! : 0,
    ...(local !== undefined ? { local: formatIp(fromBytes(local.byteLength === 4 ? 4 : 6, local)) } : {}),
    learning: (attrU8(attributes, IFLA_VXLAN_LEARNING) ?? 0) !== 0,
    ...(underlayIndex !== undefined && underlayIndex !== 0 ? { underlayIndex } : {})
  }
}

/**
 * Hairpin and isolation of a bridge port, from the port attributes the kernel puts in every
 * link message of an enslaved link (IFLA_INFO_SLAVE_DATA): no AF_BRIDGE dump of the whole
 * namespace per lookup, which grew with the pods on the node.
 */
const bridgePortFlags = (linkInfo: Map<number, Uint8Array>): { hairpin: boolean; isolated: boolean } | undefined => {
  const slaveData = attrString(linkInfo, IFLA_INFO_SLAVE_KIND) === "bridge" ? linkInfo.get(IFLA_INFO_SLAVE_DATA) : undefined
  if (!slaveData) return undefined
  const port = decodeAttributes(slaveData)
  return { hairpin: (port.get(IFLA_BRPORT_MODE)?.[0] ?? 0) !== 0, isolated: (port.get(IFLA_BRPORT_ISOLATED)?.[0] ?? 0) !== 0 }
}

/** A link message's attributes (after its ifinfomsg). */
const linkAttributes = (message: NetlinkMessage) => decodeAttributes(message.payload.subarray(IFINFOMSG_LENGTH))

/** Decodes one RTM_NEWLINK message into the Backend's LinkInfo. */
export const decodeLink = (netns: string, message: NetlinkMessage): LinkInfo => {
  const view = new DataView(message.payload.buffer, message.payload.byteOffset, message.payload.byteLength)
  const index = view.getInt32(4, true)
  const flags = view.getUint32(8, true)
  const attributes = linkAttributes(message)
  const linkInfoData = attributes.get(IFLA_LINKINFO)
  const linkInfo = linkInfoData ? decodeAttributes(linkInfoData) : undefined
  const kindName = linkInfo ? attrString(linkInfo, IFLA_INFO_KIND) : undefined
  const kind: LinkKind = flags & IFF_LOOPBACK ? "loopback" : (kindName && KINDS[kindName]) || "other"
  const address = attributes.get(IFLA_ADDRESS)
  const master = attrU32(attributes, IFLA_MASTER)
  const peer = attrU32(attributes, IFLA_LINK)
  const alias = attrString(attributes, IFLA_IFALIAS)
  const bridgeData = kind === "bridge" ? linkInfo?.get(IFLA_INFO_DATA) : undefined
  const vlanFiltering = bridgeData ? attrU8(decodeAttributes(bridgeData), IFLA_BR_VLAN_FILTERING) : undefined
  const bridgePort = linkInfo ? bridgePortFlags(linkInfo) : undefined
  const vxlanData = kind === "vxlan" ? linkInfo?.get(IFLA_INFO_DATA) : undefined
  return {
    netns,
    index,
    name: attrString(attributes, IFLA_IFNAME) ?? "",
    kind,
    up: (flags & IFF_UP) !== 0,
    mtu: attrU32(attributes, IFLA_MTU) ?? 0,
    mac: address ? macToString(address) : "",
    txqlen: attrU32(attributes, IFLA_TXQLEN) ?? 0,
    promisc: (flags & IFF_PROMISC) !== 0,
    allmulti: (flags & IFF_ALLMULTI) !== 0,
    ...(master !== undefined && master !== 0 ? { master } : {}),
    ...(kind === "veth" && peer !== undefined && peer !== 0 ? { peerIndex: peer } : {}),
    ...(alias !== undefined && alias !== "" ? { alias } : {}),
    ...(kind === "bridge" ? { vlanFiltering: (vlanFiltering ?? 0) !== 0 } : {}),
    ...(vxlanData !== undefined ? { vxlan: vxlanInfo(vxlanData) } : {}),
    ...(master !== undefined && master !== 0 && bridgePort ? { bridgePort } : {})
  }
}

/** Every link of the namespace (bridge ports with their hairpin and isolation flags). */
export const listLinks = (socket: RouteSocket, netns: string): Array<LinkInfo> =>
  socket.dump("listLinks", RTM_GETLINK, ifinfomsg()).filter((m) => m.type === RTM_NEWLINK).map((m) => decodeLink(netns, m))

/**
 * One link by name, fresh from the kernel (ENODEV/NotFound when absent): how the backend
 * turns the names it is given into ifindexes.
 */
export const getLink = (socket: RouteSocket, netns: string, name: string): LinkInfo => {
  const attributes = new AttributeWriter().string(IFLA_IFNAME, name).finish()
  const [reply] = socket.request("getLink", RTM_GETLINK, 0, ifinfomsg(), attributes, name)
  if (!reply) throw new KernelCallFailed(kernelError("getLink", 19, name))
  return decodeLink(netns, reply)
}

/** The kernel's message for the link with that ifindex (NotFound when absent). */
const linkMessage = (socket: RouteSocket, operation: string, index: number, subject = `ifindex ${index}`): NetlinkMessage => {
  const [reply] = socket.request(operation, RTM_GETLINK, 0, ifinfomsg(index), undefined, subject)
  if (!reply) throw new KernelCallFailed(kernelError(operation, 19, subject))
  return reply
}

/** One link by ifindex (NotFound when absent). */
export const getLinkByIndex = (socket: RouteSocket, netns: string, index: number): LinkInfo =>
  decodeLink(netns, linkMessage(socket, "getLinkByIndex", index))

/**
 * The ports of one bridge: a link dump the kernel filters by IFLA_MASTER (as `ip link show
 * master BR`), so only the bridge's own ports are sent and decoded, whatever else the
 * namespace holds. NotFound when the bridge is absent.
 */
export const listBridgePorts = (socket: RouteSocket, netns: string, bridge: string): Array<LinkInfo> => {
  const master = getLink(socket, netns, bridge)
  const filter = new AttributeWriter().u32(IFLA_MASTER, master.index).finish()
  return socket.dump("listBridgePorts", RTM_GETLINK, ifinfomsg(), filter)
    .filter((m) => m.type === RTM_NEWLINK)
    .map((m) => decodeLink(netns, m))
    // a kernel that ignored the filter would send every link: keep only the ports
    .filter((link) => link.master === master.index)
}

/** Whether a link of that name exists (ENODEV is "no", any other failure is thrown). */
export const linkExists = (socket: RouteSocket, netns: string, name: string): boolean => {
  try {
    getLink(socket, netns, name)
    return true
  } catch (error) {
    if (error instanceof KernelCallFailed && error.error.reason === "NotFound") return false
    throw error
  }
}

/** The name of the link with that ifindex, undefined when there is none. */
export const linkNameByIndex = (socket: RouteSocket, index: number): string | undefined => {
  try {
    return attrString(linkAttributes(linkMessage(socket, "getLink", index)), IFLA_IFNAME)
  } catch (error) {
    if (error instanceof KernelCallFailed && error.error.reason === "NotFound") return undefined
    throw error
  }
}

/** The attributes a new link (or a veth's peer) can be born with, so it never exists half-configured. */
export interface NewLinkAttributes {
  readonly name: string
  readonly mtu?: number | undefined
  readonly mac?: string | undefined
  /** fd of the namespace the link is born in (a veth peer) or moved to */
  readonly netnsFd?: number | undefined
}

const writeLinkAttributes = (writer: AttributeWriter, link: NewLinkAttributes): AttributeWriter => {
  writer.string(IFLA_IFNAME, link.name)
  if (link.mtu !== undefined) writer.u32(IFLA_MTU, link.mtu)
  if (link.mac !== undefined) writer.bytes(IFLA_ADDRESS, macToBytes(link.mac))
  if (link.netnsFd !== undefined) writer.u32(IFLA_NET_NS_FD, link.netnsFd)
  return writer
}

/** Kind-specific settings of a new link (IFLA_INFO_DATA). */
export interface NewLinkData {
  /** bridge: IFLA_BR_VLAN_FILTERING; only sent when true (off is the kernel's default) */
  readonly vlanFiltering?: boolean | undefined
  /** vxlan: its settings, the underlay already turned into an ifindex */
  readonly vxlan?: { readonly vni: number; readonly port: number; readonly local?: string | undefined; readonly underlayIndex?: number | undefined; readonly learning: boolean } | undefined
}

/** The kinds createLink makes. */
export type NewLinkKind = "veth" | "bridge" | "dummy" | "ifb" | "vxlan"

/**
 * The RTM_NEWLINK attributes creating a link of `kind`; for a veth, `peer` describes the
 * other end (born in its own namespace).
 */
export const createLinkAttributes = (
  kind: NewLinkKind,
  link: NewLinkAttributes,
  peer?: NewLinkAttributes,
  data: NewLinkData = {}
): Uint8Array =>
  writeLinkAttributes(new AttributeWriter(), link).nested(IFLA_LINKINFO, (info) => {
    info.string(IFLA_INFO_KIND, kind)
    if (kind === "bridge" && data.vlanFiltering === true) {
      info.nested(IFLA_INFO_DATA, (bridge) => bridge.u8(IFLA_BR_VLAN_FILTERING, 1))
    }
    const vxlan = data.vxlan
    if (kind === "vxlan" && vxlan !== undefined) {
      info.nested(IFLA_INFO_DATA, (settings) => {
        settings.u32(IFLA_VXLAN_ID, vxlan.vni)
        settings.bytes(IFLA_VXLAN_PORT, Uint8Array.of(vxlan.port >> 8, vxlan.port & 0xff))
        settings.u8(IFLA_VXLAN_LEARNING, vxlan.learning ? 1 : 0)
        if (vxlan.underlayIndex !== undefined) settings.u32(IFLA_VXLAN_LINK, vxlan.underlayIndex)
        const local = vxlan.local === undefined ? undefined : parseIp(vxlan.local)
        if (local !== undefined) settings.bytes(local.family === 4 ? IFLA_VXLAN_LOCAL : IFLA_VXLAN_LOCAL6, toBytes(local))
      })
    }
    if (peer) {
      info.nested(IFLA_INFO_DATA, (data) => {
        // VETH_INFO_PEER holds a whole ifinfomsg followed by the peer's attributes
        const peerAttributes = writeLinkAttributes(new AttributeWriter(), peer).finish()
        const body = new Uint8Array(IFINFOMSG_LENGTH + peerAttributes.byteLength)
        body.set(ifinfomsg(), 0)
        body.set(peerAttributes, IFINFOMSG_LENGTH)
        data.bytes(VETH_INFO_PEER, body)
      })
    }
  }).finish()

/** Creates a link (see createLinkAttributes); `operation` names the Backend call in errors. */
export const createLink = (
  socket: RouteSocket,
  operation: string,
  kind: NewLinkKind,
  link: NewLinkAttributes,
  peer?: NewLinkAttributes,
  data?: NewLinkData
): void => {
  const attributes = createLinkAttributes(kind, link, peer, data)
  socket.request(operation, RTM_NEWLINK, NLM_F_CREATE | NLM_F_EXCL, ifinfomsg(), attributes, link.name)
}

/** Deletes a link by index (a veth takes its peer with it); `name` only labels errors. */
export const deleteLink = (socket: RouteSocket, index: number, name: string): void => {
  socket.request("deleteLink", RTM_DELLINK, 0, ifinfomsg(index), undefined, name)
}

/** A link's group (IFLA_GROUP; 0, "default", unless someone set one). */
export const linkGroup = (socket: RouteSocket, link: LinkInfo): number =>
  attrU32(linkAttributes(linkMessage(socket, "getLink", link.index, link.name)), IFLA_GROUP) ?? 0

/** Puts a link in a group (IFLA_GROUP). */
export const setLinkGroup = (socket: RouteSocket, link: LinkInfo, group: number): void => {
  socket.request("setLink", RTM_NEWLINK, 0, ifinfomsg(link.index), new AttributeWriter().u32(IFLA_GROUP, group).finish(), link.name)
}

/**
 * Deletes every link of the socket's namespace in `group` in one batch (`ip link delete
 * group N`): the kernel unregisters them together, waiting for one RCU grace period, not one
 * per link. A group with a link that cannot be deleted (EOPNOTSUPP) deletes none.
 */
export const deleteLinkGroup = (socket: RouteSocket, group: number, subject: string): void => {
  socket.request("deleteLinksTogether", RTM_DELLINK, 0, ifinfomsg(), new AttributeWriter().u32(IFLA_GROUP, group).finish(), subject)
}

/** Moves a link into the namespace behind `netnsFd`, renaming it on the way when asked. */
export const moveLink = (socket: RouteSocket, link: LinkInfo, netnsFd: number, newName?: string): void => {
  const attributes = new AttributeWriter().u32(IFLA_NET_NS_FD, netnsFd)
  if (newName !== undefined) attributes.string(IFLA_IFNAME, newName)
  socket.request("moveLink", RTM_NEWLINK, 0, ifinfomsg(link.index), attributes.finish(), link.name)
}

/** Sets hairpin / isolation on a bridge port (AF_BRIDGE, IFLA_PROTINFO). */
export const setBridgePort = (
  socket: RouteSocket,
  link: LinkInfo,
  flags: { readonly hairpin?: boolean | undefined; readonly isolated?: boolean | undefined }
): void => {
  const attributes = new AttributeWriter().nested(IFLA_PROTINFO, (port) => {
    if (flags.hairpin !== undefined) port.u8(IFLA_BRPORT_MODE, flags.hairpin ? 1 : 0)
    if (flags.isolated !== undefined) port.u8(IFLA_BRPORT_ISOLATED, flags.isolated ? 1 : 0)
  })
  socket.request("setLink", RTM_SETLINK, 0, ifinfomsg(link.index, 0, 0, AF_BRIDGE), attributes.finish(), link.name)
}

const flagChange = (changes: LinkChanges): { flags: number; change: number } => {
  let flags = 0
  let change = 0
  const apply = (value: boolean | undefined, bit: number) => {
    if (value === undefined) return
    change |= bit
    if (value) flags |= bit
  }
  apply(changes.up, IFF_UP)
  apply(changes.promisc, IFF_PROMISC)
  apply(changes.allmulti, IFF_ALLMULTI)
  return { flags, change }
}

/** Applies flag, mtu, mac, txqlen, master and alias changes in one RTM_NEWLINK. */
export const setLink = (
  socket: RouteSocket,
  link: LinkInfo,
  changes: LinkChanges,
  masterIndex: number | undefined
): void => {
  const { flags, change } = flagChange(changes)
  const attributes = new AttributeWriter()
  if (changes.mtu !== undefined) attributes.u32(IFLA_MTU, changes.mtu)
  if (changes.mac !== undefined) attributes.bytes(IFLA_ADDRESS, macToBytes(changes.mac))
  if (changes.txqlen !== undefined) attributes.u32(IFLA_TXQLEN, changes.txqlen)
  if (changes.master !== undefined) attributes.u32(IFLA_MASTER, masterIndex ?? 0)
  // as iproute2: the alias without a NUL, so that "" (length 0) clears it
  if (changes.alias !== undefined) attributes.bytes(IFLA_IFALIAS, new TextEncoder().encode(changes.alias))
  socket.request("setLink", RTM_NEWLINK, 0, ifinfomsg(link.index, flags, change), attributes.finish(), link.name)
}

/**
 * Bridge VLANs by ifindex, from the AF_BRIDGE dump with RTEXT_FILTER_BRVLAN (what
 * `bridge vlan show` reads): ports report their VLANs, a bridge its own. A kernel without
 * bridge VLAN filtering reports none.
 */
export const bridgeVlans = (socket: RouteSocket, operation: string): Map<number, Array<BridgeVlan>> => {
  const vlans = new Map<number, Array<BridgeVlan>>()
  const filter = new AttributeWriter().u32(IFLA_EXT_MASK, RTEXT_FILTER_BRVLAN).finish()
  for (const message of socket.dump(operation, RTM_GETLINK, ifinfomsg(0, 0, 0, AF_BRIDGE), filter)) {
    if (message.type !== RTM_NEWLINK) continue
    const index = new DataView(message.payload.buffer, message.payload.byteOffset).getInt32(4, true)
    const spec = linkAttributes(message).get(IFLA_AF_SPEC)
    if (!spec) continue
    const list = vlans.get(index) ?? []
    for (const attribute of decodeAttributeList(spec)) {
      if (attribute.type !== IFLA_BRIDGE_VLAN_INFO || attribute.data.byteLength < 4) continue
      const view = new DataView(attribute.data.buffer, attribute.data.byteOffset, 4)
      const flags = view.getUint16(0, true)
      list.push({
        vid: view.getUint16(2, true),
        pvid: (flags & BRIDGE_VLAN_INFO_PVID) !== 0,
        untagged: (flags & BRIDGE_VLAN_INFO_UNTAGGED) !== 0
      })
    }
    vlans.set(index, list)
  }
  for (const list of vlans.values()) list.sort((a, b) => a.vid - b.vid)
  return vlans
}

/**
 * The request adding (RTM_SETLINK) or removing (RTM_DELLINK) one VLAN, as `bridge vlan
 * add|del dev LINK vid V [pvid] [untagged] [self]`. The family MUST be AF_BRIDGE: an
 * RTM_DELLINK with AF_UNSPEC would delete the link itself.
 */
export const bridgeVlanRequest = (
  add: boolean,
  link: LinkInfo,
  vlan: BridgeVlan
): { readonly type: number; readonly header: Uint8Array; readonly attributes: Uint8Array } => {
  const info = new Uint8Array(4)
  const view = new DataView(info.buffer)
  view.setUint16(0, (vlan.pvid ? BRIDGE_VLAN_INFO_PVID : 0) | (vlan.untagged ? BRIDGE_VLAN_INFO_UNTAGGED : 0), true)
  view.setUint16(2, vlan.vid, true)
  const attributes = new AttributeWriter().nested(IFLA_AF_SPEC, (spec) => {
    // a bridge's own VLANs are its "self" ones; a port's are handled by its master
    if (link.kind === "bridge") spec.u16(IFLA_BRIDGE_FLAGS, BRIDGE_FLAGS_SELF)
    spec.bytes(IFLA_BRIDGE_VLAN_INFO, info)
  })
  return {
    type: add ? RTM_SETLINK : RTM_DELLINK,
    header: ifinfomsg(link.index, 0, 0, AF_BRIDGE),
    attributes: attributes.finish()
  }
}

/** Adds or removes one VLAN of a bridge port or a bridge. */
export const changeBridgeVlan = (
  socket: RouteSocket,
  operation: string,
  add: boolean,
  link: LinkInfo,
  vlan: BridgeVlan
): void => {
  const { type, header, attributes } = bridgeVlanRequest(add, link, vlan)
  socket.request(operation, type, 0, header, attributes, `VLAN ${vlan.vid} on ${link.name}`)
}
