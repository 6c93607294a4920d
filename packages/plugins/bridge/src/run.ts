import { Effect, Layer } from "effect"
import { layer as linuxBackend } from "@tscni/backend-linux"
import { bindPlugin, runBound } from "@tscni/skel"
import { type InProcessPlugin, PluginExec } from "@tscni/steps"
import { bridgePlugin } from "./plugin.ts"

/** tscni's own IPAM, loaded only when it is actually run in-process. */
const ownIpam = (type: string): InProcessPlugin => (request) =>
  Effect.promise(() => import("@tscni/ipam/inProcess")).pipe(
    Effect.flatMap(({ inProcessIpam }) => inProcessIpam[type]!(request))
  )

/**
 * bridge on the real kernel. IPAM is exec'd from CNI_PATH as the spec says — unless the
 * binary found there is this multicall executable itself, which already holds host-local
 * and static: then they run in-process (one process start less per ADD/DEL).
 */
export const bridgeOnLinux = bindPlugin(
  bridgePlugin,
  Layer.mergeAll(linuxBackend, PluginExec.layerWithInProcess({ "host-local": ownIpam("host-local"), static: ownIpam("static") }))
)

/** The bridge process. */
export const runBridge = (stdin?: string): Promise<void> => runBound(bridgeOnLinux, stdin)
