import { networkTag as tagOf, ruleOwner as ownerOf } from "@tscni/steps"


/** Owner comment of a pod's mapping rules: `pm:<network hash>:<attachment key>` (see @tscni/steps attachment.ts). */
export const networkTag = (network: string): string => tagOf("pm", network)
/**
 * The per-pod owner comment on the mapping rules, so DEL removes exactly this pod's
 * mappings; networkTag is its per-network prefix, for GC.
 */
export const ruleOwner = (network: string, containerId: string, ifname: string): string =>
  ownerOf("pm", network, containerId, ifname)
