/**
 * The firewall's tables and the owner comments on its elements: derived from the network
 * and the attachment, so DEL and GC find a pod's elements without ADD's memory.
 */
import type { NftTableRef } from "@tscni/backend"
import { keyedTablePrefix, networkTag as tagOf, ruleOwner as ownerOf } from "@tscni/steps"

/** The kind in a firewall table's name: `tscni-fw-<network hash>-<settings hash>` (family inet). */
export const TABLE_KIND = "fw"

/** What every firewall table of the network is named with (GC). */
export const firewallTablePrefix = (network: string): string => keyedTablePrefix(TABLE_KIND, network)

/** The table of the layout before keyed tables (rules found by owner comment). */
export const LEGACY_TABLE: NftTableRef = { family: "inet", name: "tscni-firewall" }

/** The base chain holding what is allowed (hook forward, priority 0, policy accept). */
export const FORWARD_CHAIN = "forward"

/**
 * The base chain holding the ingress-policy drops. It hooks forward before FORWARD_CHAIN
 * (priority -1) because in nftables an accept only ends its own chain: a drop placed after
 * another pod's `saddr … accept` in the same chain would never be reached.
 */
export const ISOLATION_CHAIN = "isolation"

/** `fw:<network hash>`: one network's GC leaves other networks' rules alone. */
export const networkTag = (network: string): string => tagOf("fw", network)

/** The owner comment on a pod's rules: `fw:<network hash>:<attachment key>`. */
export const ruleOwner = (network: string, containerId: string, ifname: string): string =>
  ownerOf("fw", network, containerId, ifname)
