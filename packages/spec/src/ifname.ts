/**
 * Interface names, as the kernel takes them (dev_valid_name) and libcni validates
 * CNI_IFNAME: the one rule every field naming an interface is held to.
 */

/** Linux refuses interface names longer than IFNAMSIZ-1. */
export const MAX_IFNAME_LENGTH = 15

/**
 * Why the kernel would refuse `name` as an interface name (dev_valid_name: 1–15 bytes, not
 * "." or "..", no '/', ':' or whitespace; libcni's ValidateInterfaceName is the same rule),
 * as a phrase to follow the name; undefined when it is valid. The one rule CNI_IFNAME, plugin
 * configs, the runtime CLI and the mock kernel apply.
 */
export const interfaceNameProblem = (name: string): string | undefined => {
  if (name === "") return "is empty"
  const bytes = new TextEncoder().encode(name)
  if (bytes.length > MAX_IFNAME_LENGTH) return `is longer than ${MAX_IFNAME_LENGTH} bytes`
  if (name === "." || name === "..") return "is not a valid interface name"
  if (bytes.some(isRefusedByte)) return "contains '/', ':', NUL or whitespace"
  return undefined
}

/**
 * The kernel checks each byte: '/', ':' and its isspace(), which is Latin-1's (tab to
 * carriage return, space, and 0xA0, so a UTF-8 "à" — C3 A0 — is refused too). A NUL would
 * end the name early wherever a C string carries it (a path, a netlink attribute).
 */
const isRefusedByte = (byte: number): boolean =>
  byte === 0x00 || byte === 0x2f || byte === 0x3a || (byte >= 0x09 && byte <= 0x0d) || byte === 0x20 || byte === 0xa0

