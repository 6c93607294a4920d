import type { AddressInfo, LinkInfo } from "@tscni/backend"
import { kernelError, KernelCallFailed } from "../errors.ts"
import { formatIp, fromBytes, lastOf, parseCidr, toBytes } from "@tscni/ip"
import { addressFamilyCode, AttributeWriter, decodeAttributes, ipFamilyOfCode, NLM_F_CREATE, NLM_F_EXCL } from "../netlink/message.ts"
import type { RouteSocket } from "../netlink/socket.ts"

/** rtnetlink message type adding an address; also the type of each entry in an address dump. */
export const RTM_NEWADDR = 20
/** rtnetlink message type removing an address. */
export const RTM_DELADDR = 21
/** rtnetlink message type dumping addresses. */
export const RTM_GETADDR = 22

const IFA_ADDRESS = 1
const IFA_LOCAL = 2
const IFA_BROADCAST = 4
const IFADDRMSG_LENGTH = 8

/** struct ifaddrmsg */
const IFA_F_NODAD = 0x02

const ifaddrmsg = (family: number, prefix: number, index: number, flags = 0): Uint8Array => {
  const header = new Uint8Array(IFADDRMSG_LENGTH)
  const view = new DataView(header.buffer)
  view.setUint8(0, family)
  view.setUint8(1, prefix)
  view.setUint8(2, flags)
  view.setUint32(4, index, true)
  return header
}

/**
 * The addresses of `links` (every link of the namespace, or just the one asked about: the
 * kernel's dump holds every address either way, and those of other links are skipped by
 * ifindex), as CIDR strings.
 */
export const listAddresses = (socket: RouteSocket, netns: string, links: ReadonlyArray<LinkInfo>): Array<AddressInfo> => {
  const names = new Map(links.map((link) => [link.index, link.name]))
  const result: Array<AddressInfo> = []
  for (const message of socket.dump("listAddresses", RTM_GETADDR, new Uint8Array(IFADDRMSG_LENGTH))) {
    if (message.type !== RTM_NEWADDR) continue
    const view = new DataView(message.payload.buffer, message.payload.byteOffset, message.payload.byteLength)
    const family = view.getUint8(0)
    const prefix = view.getUint8(1)
    const index = view.getUint32(4, true)
    const attributes = decodeAttributes(message.payload.subarray(IFADDRMSG_LENGTH))
    const bytes = attributes.get(IFA_LOCAL) ?? attributes.get(IFA_ADDRESS)
    const ipFamily = ipFamilyOfCode(family)
    if (!bytes || ipFamily === undefined) continue
    const link = names.get(index)
    if (link === undefined) continue
    result.push({ netns, link, linkIndex: index, family: ipFamily, cidr: `${formatIp(fromBytes(ipFamily, bytes))}/${prefix}` })
  }
  return result
}

const addressRequest = (link: LinkInfo, cidr: string, operation: string, noDad = false) => {
  const parsed = parseCidr(cidr)
  if (!parsed) throw new KernelCallFailed(kernelError(operation, 22, `'${cidr}' is not an address in CIDR form`))
  const bytes = toBytes(parsed.ip)
  const attributes = new AttributeWriter().bytes(IFA_LOCAL, bytes).bytes(IFA_ADDRESS, bytes)
  // as `ip addr add … brd +` and the reference plugins do for IPv4 networks with hosts
  if (parsed.ip.family === 4 && parsed.prefix < 31) attributes.bytes(IFA_BROADCAST, toBytes(lastOf(parsed)))
  const flags = noDad && parsed.ip.family === 6 ? IFA_F_NODAD : 0
  const header = ifaddrmsg(addressFamilyCode(parsed.ip.family), parsed.prefix, link.index, flags)
  return { header, attributes: attributes.finish() }
}

/**
 * Adds an address, failing if it is already there; `noDad` skips IPv6 duplicate address
 * detection so the address is usable at once.
 */
export const addAddress = (socket: RouteSocket, link: LinkInfo, cidr: string, noDad = false): void => {
  const { header, attributes } = addressRequest(link, cidr, "addAddress", noDad)
  socket.request("addAddress", RTM_NEWADDR, NLM_F_CREATE | NLM_F_EXCL, header, attributes, `${cidr} on ${link.name}`)
}

/** Removes one address from a link (NotFound when it is not there). */
export const deleteAddress = (socket: RouteSocket, link: LinkInfo, cidr: string): void => {
  const { header, attributes } = addressRequest(link, cidr, "deleteAddress")
  socket.request("deleteAddress", RTM_DELADDR, 0, header, attributes, `${cidr} on ${link.name}`)
}
