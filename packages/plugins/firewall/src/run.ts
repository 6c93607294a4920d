import { layer as linuxBackend } from "@tscni/backend-linux"
import { bindPlugin, runBound } from "@tscni/skel"
import { firewallPlugin } from "./plugin.ts"

/** firewall on the real kernel: what its process and the resident daemon run. */
export const firewallOnLinux = bindPlugin(firewallPlugin, linuxBackend)

/** The firewall process on the real kernel (nftables through libnftables). */
export const runFirewall = (stdin?: string): Promise<void> => runBound(firewallOnLinux, stdin)
