/**
 * Names derived from the attachment (container ID + interface name), so DEL and GC find the
 * ifb device ADD made without the pod's namespace and without memory of ADD
 * (see @tscni/steps attachment.ts).
 */
import { aliasPrefix, attachmentAlias, attachmentKey } from "@tscni/steps"


/** Every ifb device tscni's bandwidth plugin makes is named with this prefix (as the reference's). */
export const IFB_PREFIX = "bwp"

/** The ifb device that carries a pod's egress: `bwp` + 12 hex digits (15 characters, the kernel's limit). */
export const ifbName = (containerId: string, ifname: string): string => `${IFB_PREFIX}${attachmentKey(containerId, ifname)}`

/** The start of the alias on every ifb of one network: GC of network A never removes network B's devices. */
export const ifbAliasPrefix = aliasPrefix

/** The alias an ifb carries, naming its network and attachment (`tscni:<network>/<containerID>/<ifname>`). */
export const ifbAlias = attachmentAlias
