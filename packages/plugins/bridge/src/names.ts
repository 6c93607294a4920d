/**
 * The bridge plugin's names, derived from the attachment (see @tscni/steps attachment.ts)
 * so DEL and GC find what ADD made without the pod's namespace and without memory of ADD.
 */
import type { NftTable, NftTableRef } from "@tscni/backend"
import {
  aliasPrefix,
  attachmentAlias,
  keyedTable,
  keyedTablePrefix,
  LOCK_DIR,
  networkTag as tagOf,
  type OwnedElement,
  ruleOwner as ownerOf
} from "@tscni/steps"


/** Host end of the pod's veth: `veth` + 11 hex digits (15 characters, the kernel's limit). */
export { hostVethName } from "@tscni/steps"

/**
 * The tables and chain of the layout before keyed tables: rules found by owner comment.
 * DEL and GC still remove a pod's rules from them (pods added before an upgrade).
 */
export const LEGACY_TABLES: ReadonlyArray<NftTableRef> = [
  { family: "ip", name: "tscni-bridge" },
  { family: "ip6", name: "tscni-bridge" },
  { family: "bridge", name: "tscni-macspoof" }
]
export const LEGACY_MASQ_CHAIN = "TSCNI-BR-MASQ"

/** The network's MAC spoof check (family bridge): the checked ports, and each one's MAC. */
export const macSpoofTable = (network: string): NftTable =>
  keyedTable("spoof", network, {
    family: "bridge",
    sets: [{ name: "ports", type: "ifname" }, { name: "allowed", type: "ifname . ether_addr" }],
    chains: [{
      name: "prerouting",
      base: { type: "filter", hook: "prerouting", priority: -300 },
      rules: ["iifname @ports iifname . ether saddr != @allowed drop"]
    }]
  })

/** What every MAC spoof table of the network is named with (GC). */
export const macSpoofTablePrefix = (network: string): string => keyedTablePrefix("spoof", network)

/**
 * A pod's MAC spoof elements: its host veth is checked, and may send from the pod's MAC
 * only (without a MAC, the port's element alone, which is all CHECK can know then).
 */
export const macSpoofElements = (hostVeth: string, mac: string | undefined): Array<OwnedElement> => [
  { set: "ports", key: `"${hostVeth}"` },
  ...(mac === undefined ? [] : [{ set: "allowed", key: `"${hostVeth}" . ${mac.toLowerCase()}` }])
]

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
