import { pluginExecWithOwnIpam } from "@tscni/ipam/ownIpam"
import { bindPlugin, runBound } from "@tscni/skel"
import { tscniNetPlugin } from "./plugin.ts"

/** tscni-net with its delegate exec'd from CNI_PATH (the delegate's own IPAM may run in-process there). */
export const tscniNetOnLinux = bindPlugin(tscniNetPlugin, pluginExecWithOwnIpam)

/** The tscni-net process. */
export const runTscniNet = (stdin?: string): Promise<void> => runBound(tscniNetOnLinux, stdin)
