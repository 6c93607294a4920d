/**
 * The bridge plugin's names, derived from the attachment (see @tscni/steps attachment.ts)
 * so DEL and GC find what ADD made without the pod's namespace and without memory of ADD.
 */
import { aliasPrefix, attachmentAlias, attachmentKey, LOCK_DIR, networkTag as tagOf, ruleOwner as ownerOf } from "@tscni/steps"


/** Host end of the pod's veth: `veth` + 11 hex digits (15 characters, the kernel's limit). */
export const hostVethName = (containerId: string, ifname: string): string =>
  `veth${attachmentKey(containerId, ifname).slice(0, 11)}`

/** tscni's nftables table for bridge networks' masquerade (families ip and ip6). */
export const BRIDGE_TABLE = "tscni-bridge"

/** tscni's iptables chain (nat table, both families) for bridge networks' masquerade, with `ipMasqBackend: "iptables"`. */
export const BRIDGE_MASQ_CHAIN = "TSCNI-BR-MASQ"

/** tscni's nftables table (family bridge) for the MAC spoof check. */
export const MACSPOOF_TABLE = "tscni-macspoof"

/** The owner comment on a pod's rules: `br:<network hash>:<attachment key>`. */
export const networkTag = (network: string): string => tagOf("br", network)
/**
 * The per-pod owner comment (`br:<network hash>:<attachment key>`) on the masquerade and
 * MAC spoof rules, so DEL removes exactly this pod's rules; networkTag is its
 * per-network prefix, for GC.
 */
export const ruleOwner = (network: string, containerId: string, ifname: string): string =>
  ownerOf("br", network, containerId, ifname)

/** Alias tscni puts on a bridge it created, so the last DEL may remove it (and only such a bridge). */
export const bridgeAlias = (network: string): string => aliasPrefix(network).slice(0, -1)

/** Alias on a pod's host veth, naming its attachment, so GC can tell which pod it serves. */
export const vethAlias = attachmentAlias

/** What every host veth alias of this network starts with. */
export const vethAliasPrefix = aliasPrefix

/** tscni's lock dir (@tscni/lock), where the bridge's lock and intent files go. */
export { LOCK_DIR }

/**
 * Lock file of one bridge: ADDs hold it shared while they plug pods in, the DEL or GC that
 * would remove the bridge holds it exclusive — so a bridge is never removed under an ADD.
 */
export const bridgeLockPath = (bridge: string): string => `${LOCK_DIR}/bridge-${bridge}.lock`

/**
 * Left by an ADD that found no bridge and may create it, removed when that ADD ends. The
 * kernel takes a new link's alias in a second request, so an ADD killed in between leaves
 * a bridge without our alias: this file is how DEL and GC still know it is ours.
 */
export const bridgeIntentPath = (bridge: string): string => `${LOCK_DIR}/bridge-${bridge}.creating`
