import type { AddressInfo, LinkInfo } from "@tscni/backend"
import { attrString, decodeAttributes } from "../netlink/message.ts"
import type { RouteSocket } from "../netlink/socket.ts"

export const RTM_NEWADDR = 20
export const RTM_GETADDR = 22

const IFA_ADDRESS = 1
const IFA_LOCAL = 2
const AF_INET = 2
const AF_INET6 = 10
const IFADDRMSG_LENGTH = 8

const ipToString = (family: number, bytes: Uint8Array): string => {
  if (family === AF_INET) return Array.from(bytes).join(".")
  const groups: Array<string> = []
  for (let i = 0; i < 16; i += 2) groups.push(((bytes[i]! << 8) | bytes[i + 1]!).toString(16))
  // compress the longest run of zero groups, as `ip` prints it
  let bestStart = -1
  let bestLength = 0
  for (let i = 0; i < 8;) {
    if (groups[i] !== "0") {
      i++
      continue
    }
    let j = i
    while (j < 8 && groups[j] === "0") j++
    if (j - i > bestLength && j - i > 1) {
      bestStart = i
      bestLength = j - i
    }
    i = j
  }
  if (bestStart === -1) return groups.join(":")
  return `${groups.slice(0, bestStart).join(":")}::${groups.slice(bestStart + bestLength).join(":")}`
}

/** Every address in the namespace, optionally of one link, as CIDR strings. */
export const listAddresses = (
  socket: RouteSocket,
  netns: string,
  links: ReadonlyArray<LinkInfo>,
  linkName?: string
): Array<AddressInfo> => {
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
    if (!bytes || (family !== AF_INET && family !== AF_INET6)) continue
    const link = names.get(index) ?? attrString(attributes, 3) ?? ""
    if (linkName !== undefined && link !== linkName) continue
    result.push({
      netns,
      link,
      linkIndex: index,
      family: family === AF_INET ? 4 : 6,
      cidr: `${ipToString(family, bytes)}/${prefix}`
    })
  }
  return result
}
