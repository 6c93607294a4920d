import { layer as linuxBackend } from "@tscni/backend-linux"
import { runPlugin } from "@tscni/skel"
import { bandwidthPlugin } from "./plugin.ts"

/** The bandwidth process on the real kernel. */
export const runBandwidth = (): Promise<void> => runPlugin(bandwidthPlugin, linuxBackend)
