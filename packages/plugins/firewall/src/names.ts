/**
 * tscni's firewall table and the owner comments on its rules: derived from the network and
 * the attachment, so DEL and GC find a pod's rules without prevResult and without ADD's memory.
 */

import { networkTag as tagOf, ruleOwner as ownerOf } from "@tscni/steps"


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
export const networkTag = (network: string): string => tagOf("fw", network)

/** The owner comment on a pod's rules: `fw:<network hash>:<attachment key>`. */
export const ruleOwner = (network: string, containerId: string, ifname: string): string =>
  ownerOf("fw", network, containerId, ifname)
