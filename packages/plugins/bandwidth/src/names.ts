/**
 * Names derived from the attachment (container ID + interface name), so DEL and GC find the
 * ifb device ADD made without the pod's namespace and without memory of ADD.
 */
import { MAX_ALIAS_BYTES } from "@tscni/backend"

const sha256 = (text: string): string => new Bun.CryptoHasher("sha256").update(text).digest("hex")

/** Every ifb device tscni's bandwidth plugin makes is named with this prefix (as the reference's). */
export const IFB_PREFIX = "bwp"

/** The attachment's stable key: 12 hex digits of sha256(containerID/ifname). */
export const attachmentKey = (containerId: string, ifname: string): string => sha256(`${containerId}/${ifname}`).slice(0, 12)

/** The ifb device that carries a pod's egress: `bwp` + 12 hex digits (15 characters, the kernel's limit). */
export const ifbName = (containerId: string, ifname: string): string => `${IFB_PREFIX}${attachmentKey(containerId, ifname)}`

const bytes = (text: string): number => Buffer.byteLength(text, "utf8")

/**
 * The start of the alias on every ifb of one network: GC of network A must never remove
 * network B's devices. A network name too long to leave room in the alias is hashed.
 */
export const ifbAliasPrefix = (network: string): string =>
  bytes(`tscni:${network}/`) <= 200 ? `tscni:${network}/` : `tscni:#${sha256(network).slice(0, 16)}/`

/** The alias an ifb carries, naming its network and attachment (`tscni:<network>/<containerID>/<ifname>`). */
export const ifbAlias = (network: string, containerId: string, ifname: string): string => {
  const full = `${ifbAliasPrefix(network)}${containerId}/${ifname}`
  return bytes(full) <= MAX_ALIAS_BYTES ? full : `${ifbAliasPrefix(network)}${attachmentKey(containerId, ifname)}`
}
