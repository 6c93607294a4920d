import { layer as linuxBackend } from "@tscni/backend-linux"
import { bindPlugin, runBound } from "@tscni/skel"
import { portmapPlugin } from "./plugin.ts"

/** portmap on the real kernel: what its process and the resident daemon run. */
export const portmapOnLinux = bindPlugin(portmapPlugin, linuxBackend)

/** The portmap process on the real kernel. */
export const runPortmap = (stdin?: string): Promise<void> => runBound(portmapOnLinux, stdin)
