import { layer as linuxBackend } from "@tscni/backend-linux"
import { bindPlugin, runBound } from "@tscni/skel"
import { loopbackPlugin } from "./plugin.ts"

/** loopback on the real kernel: what its process and the resident daemon run. */
export const loopbackOnLinux = bindPlugin(loopbackPlugin, linuxBackend)

/** The loopback process on the real kernel. */
export const runLoopback = (stdin?: string): Promise<void> => runBound(loopbackOnLinux, stdin)
