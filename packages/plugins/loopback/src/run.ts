import { layer as linuxBackend } from "@tscni/backend-linux"
import { runPlugin } from "@tscni/skel"
import { loopbackPlugin } from "./plugin.ts"

/** The loopback process on the real kernel. */
export const runLoopback = (): Promise<void> => runPlugin(loopbackPlugin, linuxBackend)
