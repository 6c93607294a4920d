/**
 * Minimal string validators for IP addresses and CIDRs: the results and
 * configs keep addresses as strings, so validation is all that is needed.
 */

const V4_OCTET = /^(0|[1-9][0-9]{0,2})$/

/** Whether `s` is a dotted-quad IPv4 address (no leading zeros). */
export const isIPv4 = (s: string): boolean => {
  const octets = s.split(".")
  return octets.length === 4 && octets.every((o) => V4_OCTET.test(o) && Number(o) <= 255)
}

const HEXTET = /^[0-9a-fA-F]{1,4}$/

/** Whether `s` is an IPv6 address (`::` compression and a trailing dotted quad allowed, no zone). */
export const isIPv6 = (s: string): boolean => {
  if (s.length === 0 || s.includes("%")) return false
  const halves = s.split("::")
  if (halves.length > 2) return false
  const groups = (part: string): Array<string> | undefined => (part === "" ? [] : part.split(":"))
  const head = groups(halves[0] ?? "")
  const tail = halves.length === 2 ? groups(halves[1] ?? "") : []
  if (head === undefined || tail === undefined) return false
  const all = [...head, ...tail]
  let count = 0
  for (let i = 0; i < all.length; i++) {
    const g = all[i] ?? ""
    if (i === all.length - 1 && g.includes(".")) {
      if (!isIPv4(g)) return false
      count += 2
    } else if (HEXTET.test(g)) {
      count += 1
    } else {
      return false
    }
  }
  return halves.length === 2 ? count <= 7 : count === 8
}

/** The address family of an IP address string, or undefined when it is neither. */
export const ipFamily = (s: string): 4 | 6 | undefined => (isIPv4(s) ? 4 : isIPv6(s) ? 6 : undefined)

/** Whether `s` is an IPv4 or IPv6 address. */
export const isIP = (s: string): boolean => ipFamily(s) !== undefined

const PREFIX = /^(0|[1-9][0-9]{0,2})$/

/** The family of an `address/prefix` string (host bits allowed, as in `10.1.2.3/24`), or undefined if invalid. */
export const cidrFamily = (s: string): 4 | 6 | undefined => {
  const slash = s.indexOf("/")
  if (slash < 0 || slash !== s.lastIndexOf("/")) return undefined
  const prefix = s.slice(slash + 1)
  const family = ipFamily(s.slice(0, slash))
  if (family === undefined || !PREFIX.test(prefix)) return undefined
  return Number(prefix) <= (family === 4 ? 32 : 128) ? family : undefined
}

/** Whether `s` is an IPv4 or IPv6 CIDR (`10.1.2.3/24`, `fd00::2/64`, `0.0.0.0/0`). */
export const isCidr = (s: string): boolean => cidrFamily(s) !== undefined
