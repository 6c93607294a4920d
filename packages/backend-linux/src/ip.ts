/** Parsing and printing of IP addresses and CIDRs in the byte form netlink uses. */

export interface ParsedCidr {
  readonly family: 4 | 6
  readonly bytes: Uint8Array
  readonly prefix: number
}

const parseIpv4 = (text: string): Uint8Array | undefined => {
  const parts = text.split(".")
  if (parts.length !== 4) return undefined
  const bytes = parts.map((part) => (/^\d{1,3}$/.test(part) ? Number(part) : NaN))
  return bytes.every((byte) => byte >= 0 && byte <= 255) ? Uint8Array.from(bytes) : undefined
}

const parseIpv6 = (text: string): Uint8Array | undefined => {
  const halves = text.split("::")
  if (halves.length > 2) return undefined
  const groupsOf = (part: string): Array<string> => (part === "" ? [] : part.split(":"))
  let head = groupsOf(halves[0]!)
  let tail = halves.length === 2 ? groupsOf(halves[1]!) : []
  // an embedded IPv4 tail (::ffff:1.2.3.4) counts as two groups
  const last = (halves.length === 2 ? tail : head).at(-1)
  let v4: Uint8Array | undefined
  if (last !== undefined && last.includes(".")) {
    v4 = parseIpv4(last)
    if (!v4) return undefined
    if (halves.length === 2) tail = tail.slice(0, -1)
    else head = head.slice(0, -1)
  }
  const groupCount = head.length + tail.length + (v4 ? 2 : 0)
  if (halves.length === 1 ? groupCount !== 8 : groupCount > 7) return undefined
  const groups = [...head, ...Array<string>(8 - groupCount).fill("0"), ...tail]
  const bytes = new Uint8Array(16)
  for (let i = 0; i < groups.length; i++) {
    if (!/^[0-9a-fA-F]{1,4}$/.test(groups[i]!)) return undefined
    const value = parseInt(groups[i]!, 16)
    bytes[i * 2] = value >> 8
    bytes[i * 2 + 1] = value & 0xff
  }
  if (v4) bytes.set(v4, 12)
  return bytes
}

/** `10.1.0.2` or `fd00::2` → family and bytes; undefined when neither. */
export const parseIp = (text: string): { family: 4 | 6; bytes: Uint8Array } | undefined => {
  const v4 = parseIpv4(text)
  if (v4) return { family: 4, bytes: v4 }
  const v6 = text.includes(":") ? parseIpv6(text) : undefined
  return v6 ? { family: 6, bytes: v6 } : undefined
}

/** `10.1.0.2/24` → family, bytes and prefix; a bare address gets the full prefix. */
export const parseCidr = (text: string): ParsedCidr | undefined => {
  const [address, prefixText, extra] = text.split("/")
  if (address === undefined || extra !== undefined) return undefined
  const ip = parseIp(address)
  if (!ip) return undefined
  const max = ip.family === 4 ? 32 : 128
  const prefix = prefixText === undefined ? max : /^\d{1,3}$/.test(prefixText) ? Number(prefixText) : NaN
  if (!(prefix >= 0 && prefix <= max)) return undefined
  return { ...ip, prefix }
}

/** Bytes → text, IPv6 with the longest zero run compressed as iproute2 prints it. */
export const ipToString = (family: 4 | 6, bytes: Uint8Array): string => {
  if (family === 4) return Array.from(bytes.subarray(0, 4)).join(".")
  const groups: Array<number> = []
  for (let i = 0; i < 16; i += 2) groups.push((bytes[i]! << 8) | bytes[i + 1]!)
  let bestStart = -1
  let bestLength = 1
  for (let i = 0; i < 8;) {
    if (groups[i] !== 0) {
      i++
      continue
    }
    let j = i
    while (j < 8 && groups[j] === 0) j++
    if (j - i > bestLength) {
      bestStart = i
      bestLength = j - i
    }
    i = j
  }
  const hex = (list: Array<number>) => list.map((group) => group.toString(16)).join(":")
  if (bestStart === -1) return hex(groups)
  return `${hex(groups.slice(0, bestStart))}::${hex(groups.slice(bestStart + bestLength))}`
}

/** The broadcast address of an IPv4 network, as the kernel expects with IFA_BROADCAST. */
export const ipv4Broadcast = (bytes: Uint8Array, prefix: number): Uint8Array => {
  const value = ((bytes[0]! << 24) | (bytes[1]! << 16) | (bytes[2]! << 8) | bytes[3]!) >>> 0
  const host = prefix === 0 ? 0xffffffff : (2 ** (32 - prefix) - 1) >>> 0
  const broadcast = (value | host) >>> 0
  return Uint8Array.of(broadcast >>> 24, (broadcast >>> 16) & 0xff, (broadcast >>> 8) & 0xff, broadcast & 0xff)
}

/** Clears the host bits: `10.1.0.2/24` → bytes of `10.1.0.0`. */
export const networkBytes = (bytes: Uint8Array, prefix: number): Uint8Array => {
  const out = Uint8Array.from(bytes)
  for (let bit = prefix; bit < out.length * 8; bit++) out[bit >> 3]! &= ~(0x80 >> (bit & 7))
  return out
}
