import { layer as linuxBackend } from "@tscni/backend-linux"
import { bindPlugin, runBound } from "@tscni/skel"
import { bandwidthPlugin } from "./plugin.ts"

/** bandwidth on the real kernel: what its process and the resident daemon run. */
export const bandwidthOnLinux = bindPlugin(bandwidthPlugin, linuxBackend)

/** The bandwidth process on the real kernel. */
export const runBandwidth = (stdin?: string): Promise<void> => runBound(bandwidthOnLinux, stdin)
