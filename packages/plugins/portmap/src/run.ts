import { layer as linuxBackend } from "@tscni/backend-linux"
import { runPlugin } from "@tscni/skel"
import { portmapPlugin } from "./plugin.ts"

/** The portmap process on the real kernel. */
export const runPortmap = (): Promise<void> => runPlugin(portmapPlugin, linuxBackend)
