import { layer as linuxBackend } from "@tscni/backend-linux"
import { runPlugin } from "@tscni/skel"
import { firewallPlugin } from "./plugin.ts"

/** The firewall process on the real kernel (nftables through libnftables). */
export const runFirewall = (): Promise<void> => runPlugin(firewallPlugin, linuxBackend)
