/**
 * Neighbour entries (ARP/NDP: `ip neigh`) and a VXLAN device's forwarding entries
 * (`bridge fdb … self`) over rtnetlink: both are RTM_*NEIGH messages, the latter in the
 * AF_BRIDGE family with NTF_SELF (the device's own table, not a bridge's). Dumps ask the
 * kernel for one device's entries only, and are filtered here again.
 */
import type { FdbEntry, Neighbor } from "@tscni/backend"
import { formatIp, fromBytes, parseIp, parseMac, toBytes } from "@tscni/ip"
import { kernelError, KernelCallFailed } from "../errors.ts"
import { addressFamilyCode, AttributeWriter, decodeAttributes, ipFamilyOfCode, NLM_F_CREATE, type NetlinkMessage } from "../netlink/message.ts"
import type { RouteSocket } from "../netlink/socket.ts"
import { ifinfomsg, macToBytes, macToString } from "./link.ts"

const RTM_NEWNEIGH = 28
const RTM_DELNEIGH = 29
const RTM_GETNEIGH = 30
const NDA_DST = 1
const NDA_LLADDR = 2
const NDA_IFINDEX = 8
const NUD_PERMANENT = 0x80
/** entries that need no resolution (multicast, point-to-point): not neighbours anyone set */
const NUD_NOARP = 0x40
const NTF_SELF = 0x02
const NLM_F_REPLACE = 0x100
const AF_UNSPEC = 0
const AF_BRIDGE = 7
const NDMSG_LENGTH = 12

/** struct ndmsg */
const ndmsg = (family: number, index: number, state = 0, flags = 0): Uint8Array => {
  const header = new Uint8Array(NDMSG_LENGTH)
  const view = new DataView(header.buffer)
  view.setUint8(0, family)
  view.setInt32(4, index, true)
  view.setUint16(8, state, true)
  view.setUint8(10, flags)
  return header
}

const macBytes = (operation: string, mac: string): Uint8Array => {
  const parsed = parseMac(mac)
  if (parsed === undefined) throw new KernelCallFailed(kernelError(operation, 22, `'${mac}' is not a MAC address`))
  return macToBytes(parsed)
}
const ipBytes = (operation: string, text: string) => {
  const ip = parseIp(text)
  if (ip === undefined) throw new KernelCallFailed(kernelError(operation, 22, `'${text}' is not an IP address`))
  return ip
}

interface DecodedNeigh {
  readonly family: number
  readonly index: number
  readonly state: number
  readonly flags: number
  readonly dst: Uint8Array | undefined
  readonly lladdr: Uint8Array | undefined
}

const decodeNeigh = (message: NetlinkMessage): DecodedNeigh => {
  const view = new DataView(message.payload.buffer, message.payload.byteOffset, message.payload.byteLength)
  const attributes = decodeAttributes(message.payload.subarray(NDMSG_LENGTH))
  return {
    family: view.getUint8(0),
    index: view.getInt32(4, true),
    state: view.getUint16(8, true),
    flags: view.getUint8(10),
    dst: attributes.get(NDA_DST),
    lladdr: attributes.get(NDA_LLADDR)
  }
}

/** The neighbour entries of one link (ifindex `index`, named `link`) that resolve to a MAC. */
export const listNeighbors = (socket: RouteSocket, link: string, index: number): Array<Neighbor> => {
  const filter = new AttributeWriter().u32(NDA_IFINDEX, index).finish()
  const neighbors: Array<Neighbor> = []
  for (const message of socket.dump("listNeighbors", RTM_GETNEIGH, ndmsg(AF_UNSPEC, 0), filter)) {
    if (message.type !== RTM_NEWNEIGH) continue
    const entry = decodeNeigh(message)
    const family = ipFamilyOfCode(entry.family)
    if (entry.index !== index || family === undefined || entry.dst === undefined || entry.lladdr === undefined || entry.lladdr.byteLength !== 6) continue
    if ((entry.state & NUD_NOARP) !== 0) continue
    neighbors.push({ link, ip: formatIp(fromBytes(family, entry.dst)), mac: macToString(entry.lladdr), permanent: (entry.state & NUD_PERMANENT) !== 0 })
  }
  return neighbors
}

/** Adds (or replaces) a permanent neighbour entry. */
export const setNeighbor = (socket: RouteSocket, index: number, neighbor: { readonly link: string; readonly ip: string; readonly mac: string }): void => {
  const ip = ipBytes("setNeighbor", neighbor.ip)
  const attributes = new AttributeWriter().bytes(NDA_DST, toBytes(ip)).bytes(NDA_LLADDR, macBytes("setNeighbor", neighbor.mac)).finish()
  socket.request("setNeighbor", RTM_NEWNEIGH, NLM_F_CREATE | NLM_F_REPLACE, ndmsg(addressFamilyCode(ip.family), index, NUD_PERMANENT), attributes, `${neighbor.ip} dev ${neighbor.link}`)
}

/** Deletes the link's entry for an address. */
export const deleteNeighbor = (socket: RouteSocket, index: number, neighbor: { readonly link: string; readonly ip: string }): void => {
  const ip = ipBytes("deleteNeighbor", neighbor.ip)
  const attributes = new AttributeWriter().bytes(NDA_DST, toBytes(ip)).finish()
  socket.request("deleteNeighbor", RTM_DELNEIGH, 0, ndmsg(addressFamilyCode(ip.family), index), attributes, `${neighbor.ip} dev ${neighbor.link}`)
}

/**
 * A device's own forwarding entries that name a remote (the VXLAN peers). The dump's
 * header is an ifinfomsg whose ifindex asks for that device's entries only (the kernel's
 * legacy fdb dump filter).
 */
export const listFdb = (socket: RouteSocket, link: string, index: number): Array<FdbEntry> => {
  const entries: Array<FdbEntry> = []
  for (const message of socket.dump("listFdb", RTM_GETNEIGH, ifinfomsg(index, 0, 0, AF_BRIDGE))) {
    if (message.type !== RTM_NEWNEIGH) continue
    const entry = decodeNeigh(message)
    if (entry.family !== AF_BRIDGE || entry.index !== index || (entry.flags & NTF_SELF) === 0 || entry.lladdr === undefined || entry.dst === undefined) continue
    const family = entry.dst.byteLength === 4 ? 4 : entry.dst.byteLength === 16 ? 6 : undefined
    if (family === undefined) continue
    entries.push({ link, mac: macToString(entry.lladdr), dst: formatIp(fromBytes(family, entry.dst)) })
  }
  return entries
}

const fdbRequest = (operation: string, entry: FdbEntry) =>
  new AttributeWriter().bytes(NDA_LLADDR, macBytes(operation, entry.mac)).bytes(NDA_DST, toBytes(ipBytes(operation, entry.dst))).finish()

/** Adds (or replaces) a permanent forwarding entry on a VXLAN device. */
export const setFdb = (socket: RouteSocket, index: number, entry: FdbEntry): void => {
  socket.request("setFdb", RTM_NEWNEIGH, NLM_F_CREATE | NLM_F_REPLACE, ndmsg(AF_BRIDGE, index, NUD_PERMANENT, NTF_SELF), fdbRequest("setFdb", entry), `${entry.mac} dst ${entry.dst} dev ${entry.link}`)
}

/** Deletes a forwarding entry of a VXLAN device. */
export const deleteFdb = (socket: RouteSocket, index: number, entry: FdbEntry): void => {
  socket.request("deleteFdb", RTM_DELNEIGH, 0, ndmsg(AF_BRIDGE, index, 0, NTF_SELF), fdbRequest("deleteFdb", entry), `${entry.mac} dst ${entry.dst} dev ${entry.link}`)
}
