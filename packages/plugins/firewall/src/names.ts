/**
 * tscni's firewall table and the owner comments on its rules: derived from the network and
 * the attachment, so DEL and GC find a pod's rules without prevResult and without ADD's memory.
 */

const sha256 = (text: string): string => new Bun.CryptoHasher("sha256").update(text).digest("hex")

/** The attachment's stable key: 12 hex digits of sha256(containerID/ifname). */
export const attachmentKey = (containerId: string, ifname: string): string => sha256(`${containerId}/${ifname}`).slice(0, 12)

/** tscni's own nftables table (family inet: one rule set for IPv4 and IPv6). */
export const FIREWALL_TABLE = "tscni-firewall"

/** The base chain holding what is allowed (hook forward, priority 0, policy accept). */
export const FORWARD_CHAIN = "forward"

/**
 * The base chain holding the ingress-policy drops. It hooks forward before FORWARD_CHAIN
 * (priority -1) because in nftables an accept only ends its own chain: a drop placed after
 * another pod's `saddr … accept` in the same chain would never be reached.
 */
export const ISOLATION_CHAIN = "isolation"

/** `fw:<network hash>`: one network's GC leaves other networks' rules alone. */
export const networkTag = (network: string): string => `fw:${sha256(network).slice(0, 8)}`

/** The owner comment on a pod's rules: `fw:<network hash>:<attachment key>`. */
export const ruleOwner = (network: string, containerId: string, ifname: string): string =>
  `${networkTag(network)}:${attachmentKey(containerId, ifname)}`
