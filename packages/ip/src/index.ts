/**
 * IP addresses, CIDRs and MACs for every package: parsing as inet_pton does, canonical
 * printing as the kernel's tools do (RFC 5952 for IPv6), and the arithmetic networks need.
 * Addresses are numbers (bigint) so masking, containment and "the next address" are exact.
 */

/** The family as CNI and the kernel number it; decides address width and text form. */
export type IpFamily = 4 | 6

/** An IP address as a number, so the model can mask, compare and contain without strings. */
export interface Ip {
  readonly family: IpFamily
  readonly value: bigint
}

/** An address with a prefix length: an interface address or (masked) a route destination. */
export interface Cidr {
  readonly ip: Ip
  readonly prefix: number
}

/** Address width in bits. */
export const bits = (family: IpFamily): number => (family === 4 ? 32 : 128)

const parseIpv4 = (text: string): bigint | undefined => {
  const parts = text.split(".")
  if (parts.length !== 4) return undefined
  let value = 0n
  for (const part of parts) {
    // inet_pton: decimal only, no leading zeros, 0..255
    if (!/^(0|[1-9][0-9]{0,2})$/.test(part)) return undefined
    const octet = Number(part)
    if (octet > 255) return undefined
    value = (value << 8n) | BigInt(octet)
  }
  return value
}

/** Hex groups separated by ':'; a dotted quad may end them only where it ends the address (`endsAddress`). */
const parseGroups = (text: string, endsAddress: boolean): Array<number> | undefined => {
  if (text === "") return []
  const groups: Array<number> = []
  const parts = text.split(":")
  for (const [i, part] of parts.entries()) {
    if (endsAddress && i === parts.length - 1 && part.includes(".")) {
      const v4 = parseIpv4(part)
      if (v4 === undefined) return undefined
      groups.push(Number(v4 >> 16n), Number(v4 & 0xffffn))
    } else {
      if (!/^[0-9a-fA-F]{1,4}$/.test(part)) return undefined
      groups.push(Number.parseInt(part, 16))
    }
  }
  return groups
}

const parseIpv6 = (text: string): bigint | undefined => {
  const halves = text.split("::")
  if (halves.length > 2) return undefined
  const head = parseGroups(halves[0] ?? "", halves.length === 1)
  const tail = halves.length === 2 ? parseGroups(halves[1] ?? "", true) : []
  if (head === undefined || tail === undefined) return undefined
  const missing = 8 - head.length - tail.length
  if (halves.length === 2 ? missing < 1 : missing !== 0) return undefined
  const groups = [...head, ...Array.from({ length: missing }, () => 0), ...tail]
  return groups.reduce((acc, group) => (acc << 16n) | BigInt(group), 0n)
}

/** Parses a plain address (no prefix) the way inet_pton does; undefined when it is not one. */
export const parseIp = (text: string): Ip | undefined => {
  if (text.includes(":")) {
    const value = parseIpv6(text)
    return value === undefined ? undefined : { family: 6, value }
  }
  const value = parseIpv4(text)
  return value === undefined ? undefined : { family: 4, value }
}

/** Parses `address/prefix`; the prefix is mandatory, host bits are kept. */
export const parseCidr = (text: string): Cidr | undefined => {
  const slash = text.indexOf("/")
  if (slash < 0) return undefined
  const ip = parseIp(text.slice(0, slash))
  const prefixText = text.slice(slash + 1)
  if (ip === undefined || !/^(0|[1-9][0-9]{0,2})$/.test(prefixText)) return undefined
  const prefix = Number(prefixText)
  return prefix > bits(ip.family) ? undefined : { ip, prefix }
}

const mask = (family: IpFamily, prefix: number): bigint => {
  const width = BigInt(bits(family))
  const all = (1n << width) - 1n
  return (all << (width - BigInt(prefix))) & all
}

/** The network a CIDR belongs to (host bits cleared). */
export const networkOf = (cidr: Cidr): Cidr => ({
  ip: { family: cidr.ip.family, value: cidr.ip.value & mask(cidr.ip.family, cidr.prefix) },
  prefix: cidr.prefix
})

/** True when the CIDR has host bits set (the kernel rejects such IPv4 route destinations). */
export const hasHostBits = (cidr: Cidr): boolean => networkOf(cidr).ip.value !== cidr.ip.value

/** True when `ip` lies inside the network of `cidr`. */
export const contains = (cidr: Cidr, ip: Ip): boolean =>
  cidr.ip.family === ip.family && (ip.value & mask(ip.family, cidr.prefix)) === networkOf(cidr).ip.value

/** Same family and same address. */
export const sameIp = (a: Ip, b: Ip): boolean => a.family === b.family && a.value === b.value

/**
 * Whether two address texts name the same address, however spelled (`FD00:0::1` is
 * `fd00::1`, as the kernel lists it); text that is not an address compares case-blind.
 */
export const sameIpText = (a: string, b: string): boolean => {
  const [x, y] = [parseIp(a), parseIp(b)]
  return x !== undefined && y !== undefined ? sameIp(x, y) : a.toLowerCase() === b.toLowerCase()
}

/** Like sameIpText for CIDRs: same address (host bits kept) and same prefix. */
export const sameCidrText = (a: string, b: string): boolean => {
  const [x, y] = [parseCidr(a), parseCidr(b)]
  return x !== undefined && y !== undefined ? sameIp(x.ip, y.ip) && x.prefix === y.prefix : a.toLowerCase() === b.toLowerCase()
}

/** True for IPv6 link-local (fe80::/10), which needs no route to be a gateway. */
export const isLinkLocal6 = (ip: Ip): boolean => ip.family === 6 && ip.value >> 118n === 0x3fan

const formatIpv6 = (value: bigint): string => {
  const groups = Array.from({ length: 8 }, (_, i) => Number((value >> BigInt((7 - i) * 16)) & 0xffffn))
  // RFC 5952: compress the longest run (>= 2) of zero groups, the first one on a tie
  let bestStart = -1
  let bestLength = 0
  for (let i = 0; i < 8; ) {
    if (groups[i] !== 0) {
      i++
      continue
    }
    let j = i
    while (j < 8 && groups[j] === 0) j++
    if (j - i > bestLength && j - i >= 2) {
      bestStart = i
      bestLength = j - i
    }
    i = j
  }
  const hex = groups.map((g) => g.toString(16))
  if (bestStart < 0) return hex.join(":")
  return `${hex.slice(0, bestStart).join(":")}::${hex.slice(bestStart + bestLength).join(":")}`
}

/** Canonical text form, as the kernel's tools print it (lower case, RFC 5952 for IPv6). */
export const formatIp = (ip: Ip): string =>
  ip.family === 4
    ? [24n, 16n, 8n, 0n].map((shift) => ((ip.value >> shift) & 0xffn).toString()).join(".")
    : formatIpv6(ip.value)

/** Canonical `address/prefix` text, so CIDRs compare and print as the kernel's tools show them. */
export const formatCidr = (cidr: Cidr): string => `${formatIp(cidr.ip)}/${cidr.prefix}`

/** Parses a MAC in colon form; undefined unless it is six hex octets. Returns lower case. */
export const parseMac = (text: string): string | undefined =>
  /^([0-9a-fA-F]{2}:){5}[0-9a-fA-F]{2}$/.test(text) ? text.toLowerCase() : undefined

/** The kernel refuses multicast and all-zero MACs for an interface (EADDRNOTAVAIL). */
export const isAssignableMac = (mac: string): boolean =>
  mac !== "00:00:00:00:00:00" && (Number.parseInt(mac.slice(0, 2), 16) & 1) === 0

/** The family of an address string, or undefined when it is not an address. */
export const ipFamily = (text: string): IpFamily | undefined => parseIp(text)?.family

/** The family of an `address/prefix` string (host bits allowed), or undefined when it is not one. */
export const cidrFamily = (text: string): IpFamily | undefined => parseCidr(text)?.ip.family

/** Network byte order, as netlink carries addresses. */
export const toBytes = (ip: Ip): Uint8Array => {
  const length = ip.family === 4 ? 4 : 16
  const bytes = new Uint8Array(length)
  for (let i = 0; i < length; i++) bytes[i] = Number((ip.value >> BigInt((length - 1 - i) * 8)) & 0xffn)
  return bytes
}

/** An address from network byte order, as netlink reports it (the inverse of toBytes). */
export const fromBytes = (family: IpFamily, bytes: Uint8Array): Ip => {
  let value = 0n
  for (const byte of bytes.subarray(0, family === 4 ? 4 : 16)) value = (value << 8n) | BigInt(byte)
  return { family, value }
}

/** The last address of the CIDR's network (the IPv4 broadcast address). */
export const lastOf = (cidr: Cidr): Ip => ({
  family: cidr.ip.family,
  value: networkOf(cidr).ip.value | (((1n << BigInt(bits(cidr.ip.family))) - 1n) >> BigInt(cidr.prefix))
})
