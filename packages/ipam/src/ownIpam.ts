import { Effect, type Layer } from "effect"
import { type InProcessPlugin, PluginExec } from "@tscni/steps"

/** tscni's own IPAM, loaded only when it is actually run in-process. */
const ownIpam = (type: string): InProcessPlugin => (request) =>
  Effect.promise(() => import("./inProcess.ts")).pipe(Effect.flatMap(({ inProcessIpam }) => inProcessIpam[type]!(request)))

/**
 * The PluginExec of a plugin that delegates IPAM (bridge, ptp) on the real host: IPAM is
 * exec'd from CNI_PATH as the spec says, unless the binary found there is this multicall
 * executable itself, which already holds host-local and static: then they run in-process
 * (one process start less per ADD/DEL). Import it from `@tscni/ipam/ownIpam`: the IPAM code
 * itself is loaded only on the first in-process run.
 */
export const pluginExecWithOwnIpam: Layer.Layer<PluginExec> = PluginExec.layerWithInProcess({
  "host-local": ownIpam("host-local"),
  static: ownIpam("static")
})
