import { Layer } from "effect"
import { layer as linuxBackend } from "@tscni/backend-linux"
import { pluginExecWithOwnIpam } from "@tscni/ipam/ownIpam"
import { bindPlugin, runBound } from "@tscni/skel"
import { bridgePlugin } from "./plugin.ts"

/**
 * bridge on the real kernel. IPAM is exec'd from CNI_PATH as the spec says — unless the
 * binary found there is this multicall executable itself, which already holds host-local
 * and static: then they run in-process (one process start less per ADD/DEL).
 */
export const bridgeOnLinux = bindPlugin(bridgePlugin, Layer.mergeAll(linuxBackend, pluginExecWithOwnIpam))

/** The bridge process. */
export const runBridge = (stdin?: string): Promise<void> => runBound(bridgeOnLinux, stdin)
