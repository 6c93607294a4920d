/**
 * tscni's own plugins as in-process values, for dry runs: each runs through the skel's
 * handleInvocation exactly as its binary would, on whatever Backend and IPAM store the
 * dry run provides. A plugin package that exports a PluginDefinition is added here.
 */
import { join } from "node:path"
import type { Effect } from "effect"
import type { Backend } from "@tscni/backend"
import { hostLocalPlugin, type IpamStore, staticPlugin } from "@tscni/ipam"
import { bandwidthPlugin } from "@tscni/plugin-bandwidth"
import { bridgePlugin } from "@tscni/plugin-bridge"
import { firewallPlugin } from "@tscni/plugin-firewall"
import { loopbackPlugin } from "@tscni/plugin-loopback"
import { portmapPlugin } from "@tscni/plugin-portmap"
import { ptpPlugin } from "@tscni/plugin-ptp"
import { DEFAULT_OPTIONS as TUNING_DEFAULTS, makeTuningPlugin } from "@tscni/plugin-tuning"
import { handleInvocation, type Invocation, type Outcome, type PluginDefinition } from "@tscni/skel"
import type { PluginExec } from "@tscni/steps"

/** What an in-process plugin may need. */
export type DryRunServices = Backend | PluginExec | IpamStore

/** One plugin, type-erased to the dry run's services. */
export interface InProcessPlugin {
  readonly name: string
  readonly run: (invocation: Invocation) => Effect.Effect<Outcome, never, DryRunServices>
}

const entry = <R extends DryRunServices>(plugin: PluginDefinition<R>): InProcessPlugin => ({
  name: plugin.name,
  run: (invocation) => handleInvocation(plugin, invocation)
})

/** Where a plugin keeps state on disk in a dry run: under the scratch dir, never the host's. */
export const scratchStateDir = (scratch: string, type: string): string => join(scratch, type)

/** Every plugin a dry run can run, by type; state on disk goes under `scratch`. */
export const inProcessPlugins = (scratch: string): ReadonlyMap<string, InProcessPlugin> =>
  new Map(
    [
      entry(loopbackPlugin),
      entry(bridgePlugin),
      entry(hostLocalPlugin),
      entry(staticPlugin),
      entry(portmapPlugin),
      entry(bandwidthPlugin),
      entry(firewallPlugin),
      entry(ptpPlugin),
      entry(makeTuningPlugin({ ...TUNING_DEFAULTS, dataDir: scratchStateDir(scratch, "tuning") }))
    ].map((p) => [p.name, p])
  )

/** The types a dry run can run (for messages and checks before any scratch dir exists). */
export const IN_PROCESS_TYPES: ReadonlyArray<string> = [...inProcessPlugins("/nonexistent").keys()]
