import { MAX_ALIAS_BYTES } from "@tscni/backend"

/**
 * Names derived from the attachment (container ID + interface name) and the network, shared
 * by every plugin: DEL and GC find what ADD made from these alone, without the pod's
 * namespace and without any memory of ADD.
 */

const sha256 = (text: string): string => new Bun.CryptoHasher("sha256").update(text).digest("hex")

/** The attachment's stable key: 12 hex digits of sha256(containerID/ifname). */
export const attachmentKey = (containerId: string, ifname: string): string => sha256(`${containerId}/${ifname}`).slice(0, 12)

/** `<prefix>:<8 hex of sha256(network)>`: lets one network's GC leave other networks' things alone. */
export const networkTag = (prefix: string, network: string): string => `${prefix}:${sha256(network).slice(0, 8)}`

/** Owner comment of a pod's packet-filter rules: `<prefix>:<network hash>:<attachment key>`. */
export const ruleOwner = (prefix: string, network: string, containerId: string, ifname: string): string =>
  `${networkTag(prefix, network)}:${attachmentKey(containerId, ifname)}`

const bytes = (text: string): number => Buffer.byteLength(text, "utf8")

/** Start of the aliases a network's links carry: `tscni:<network>/` (hashed when the name is very long). */
export const aliasPrefix = (network: string): string =>
  bytes(`tscni:${network}/`) <= 200 ? `tscni:${network}/` : `tscni:#${sha256(network).slice(0, 16)}/`

/**
 * Alias of a link made for one attachment (a host veth, an ifb): names the network and the
 * attachment, within the kernel's alias size (the attachment key stands in when too long).
 */
export const attachmentAlias = (network: string, containerId: string, ifname: string): string => {
  const full = `${aliasPrefix(network)}${containerId}/${ifname}`
  return bytes(full) <= MAX_ALIAS_BYTES ? full : `${aliasPrefix(network)}${attachmentKey(containerId, ifname)}`
}

/**
 * Host end of a pod's veth (bridge, ptp): `veth` + 11 hex digits of the attachment key (15
 * characters, the kernel's limit), so DEL finds it by name without the pod's namespace.
 */
export const hostVethName = (containerId: string, ifname: string): string =>
  `veth${attachmentKey(containerId, ifname).slice(0, 11)}`
