/**
 * The ptp plugin's names, derived from the attachment (see @tscni/steps attachment.ts) so
 * DEL and GC find what ADD made without the pod's namespace and without memory of ADD.
 */
import { attachmentAlias, networkTag as tagOf, ruleOwner as ownerOf } from "@tscni/steps"

/** Host end of the pod's veth: `veth` + 11 hex digits of the attachment key, as bridge's. */
export { hostVethName } from "@tscni/steps"

/** Alias on a pod's host veth, naming its network and attachment: how GC tells this network's veths. */
export const vethAlias = attachmentAlias

/** The owner comment on a pod's masquerade elements or iptables rules: `ptp:<network hash>:<attachment key>`. */
export const ruleOwner = (network: string, containerId: string, ifname: string): string => ownerOf("ptp", network, containerId, ifname)

/** The per-network prefix of ruleOwner (`ptp:<network hash>`), for GC. */
export const networkTag = (network: string): string => tagOf("ptp", network)
