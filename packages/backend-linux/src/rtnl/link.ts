import type { LinkChanges, LinkInfo, LinkKind } from "@tscni/backend"
import { kernelError, KernelCallFailed } from "../errors.ts"
import { attrString, attrU32, AttributeWriter, decodeAttributes, type NetlinkMessage } from "../netlink/message.ts"
import type { RouteSocket } from "../netlink/socket.ts"

export const RTM_NEWLINK = 16
export const RTM_DELLINK = 17
export const RTM_GETLINK = 18

const IFLA_ADDRESS = 1
const IFLA_IFNAME = 3
const IFLA_MTU = 4
const IFLA_LINK = 5
const IFLA_MASTER = 10
const IFLA_TXQLEN = 13
const IFLA_LINKINFO = 18
const IFLA_INFO_KIND = 1

const IFF_UP = 0x1
const IFF_LOOPBACK = 0x8
const IFF_PROMISC = 0x100
const IFF_ALLMULTI = 0x200

const AF_UNSPEC = 0
const IFINFOMSG_LENGTH = 16

/** struct ifinfomsg */
export const ifinfomsg = (index = 0, flags = 0, change = 0): Uint8Array => {
  const header = new Uint8Array(IFINFOMSG_LENGTH)
  const view = new DataView(header.buffer)
  view.setUint8(0, AF_UNSPEC)
  view.setInt32(4, index, true)
  view.setUint32(8, flags, true)
  view.setUint32(12, change, true)
  return header
}

export const macToString = (bytes: Uint8Array): string =>
  Array.from(bytes, (byte) => byte.toString(16).padStart(2, "0")).join(":")

export const macToBytes = (mac: string): Uint8Array => Uint8Array.from(mac.split(":"), (part) => parseInt(part, 16))

const KINDS: Record<string, LinkKind> = { veth: "veth", bridge: "bridge", dummy: "dummy", ifb: "ifb" }

/** Decodes one RTM_NEWLINK message into the Backend's LinkInfo. */
export const decodeLink = (netns: string, message: NetlinkMessage): LinkInfo => {
  const view = new DataView(message.payload.buffer, message.payload.byteOffset, message.payload.byteLength)
  const index = view.getInt32(4, true)
  const flags = view.getUint32(8, true)
  const attributes = decodeAttributes(message.payload.subarray(IFINFOMSG_LENGTH))
  const linkInfo = attributes.get(IFLA_LINKINFO)
  const kindName = linkInfo ? attrString(decodeAttributes(linkInfo), IFLA_INFO_KIND) : undefined
  const kind: LinkKind = flags & IFF_LOOPBACK ? "loopback" : (kindName && KINDS[kindName]) || "other"
  const address = attributes.get(IFLA_ADDRESS)
  const master = attrU32(attributes, IFLA_MASTER)
  const peer = attrU32(attributes, IFLA_LINK)
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
    ...(kind === "veth" && peer !== undefined && peer !== 0 ? { peerIndex: peer } : {})
  }
}

export const listLinks = (socket: RouteSocket, netns: string): Array<LinkInfo> =>
  socket.dump("listLinks", RTM_GETLINK, ifinfomsg()).filter((m) => m.type === RTM_NEWLINK).map((m) =>
    decodeLink(netns, m)
  )

export const getLink = (socket: RouteSocket, netns: string, name: string): LinkInfo => {
  const attributes = new AttributeWriter().string(IFLA_IFNAME, name).finish()
  const [reply] = socket.request("getLink", RTM_GETLINK, 0, ifinfomsg(), attributes)
  if (!reply) throw new KernelCallFailed(kernelError("getLink", 19, name))
  return decodeLink(netns, reply)
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

/** Applies flag, mtu, mac, txqlen and master changes in one RTM_NEWLINK. */
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
  socket.request("setLink", RTM_NEWLINK, 0, ifinfomsg(link.index, flags, change), attributes.finish())
}
