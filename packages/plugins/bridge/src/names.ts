/**
 * Names derived from the attachment (container ID + interface name), so DEL and GC find
 * what ADD made without the pod's namespace and without memory of ADD.
 */

const sha256 = (text: string): string => new Bun.CryptoHasher("sha256").update(text).digest("hex")

/** The attachment's stable key: 12 hex digits of sha256(containerID/ifname). */
export const attachmentKey = (containerId: string, ifname: string): string => sha256(`${containerId}/${ifname}`).slice(0, 12)

/** Host end of the pod's veth: `veth` + 11 hex digits (15 characters, the kernel's limit). */
export const hostVethName = (containerId: string, ifname: string): string =>
  `veth${attachmentKey(containerId, ifname).slice(0, 11)}`

/** tscni's nftables table for bridge networks' masquerade (families ip and ip6). */
export const BRIDGE_TABLE = "tscni-bridge"

/** tscni's iptables chain (nat table, both families) for bridge networks' masquerade, with `ipMasqBackend: "iptables"`. */
export const BRIDGE_MASQ_CHAIN = "TSCNI-BR-MASQ"

/** tscni's nftables table (family bridge) for the MAC spoof check. */
export const MACSPOOF_TABLE = "tscni-macspoof"

/**
 * The owner comment on a pod's rules: `br:<network hash>:<attachment key>`. The network part
 * lets one network's GC leave other networks' rules alone.
 */
export const networkTag = (network: string): string => `br:${sha256(network).slice(0, 8)}`
export const ruleOwner = (network: string, containerId: string, ifname: string): string =>
  `${networkTag(network)}:${attachmentKey(containerId, ifname)}`

/** Alias tscni puts on a bridge it created, so the last DEL may remove it (and only such a bridge). */
export const bridgeAlias = (network: string): string => `tscni:${network}`

/** Alias on a pod's host veth, naming its attachment, so GC can tell which pod it serves. */
export const vethAlias = (network: string, containerId: string, ifname: string): string =>
  `tscni:${network}/${containerId}/${ifname}`
