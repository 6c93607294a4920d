import type { BoundPlugin } from "@tscni/skel/run"

/** A plugin's process entry (reads stdin itself unless given it) and the plugin bound to its layer (what the daemon runs). */
export interface PluginEntry {
  readonly run: (stdin?: string) => Promise<void>
  readonly bound: BoundPlugin
}

/** Each plugin's entry, loaded only when that plugin is the one invoked. */
const PLUGINS: Record<string, () => Promise<PluginEntry>> = {
  loopback: () => import("@tscni/plugin-loopback/run").then((m) => ({ run: m.runLoopback, bound: m.loopbackOnLinux })),
  "host-local": () => import("@tscni/plugin-host-local/run").then((m) => ({ run: m.runHostLocal, bound: m.hostLocalOnDisk })),
  static: () => import("@tscni/plugin-static/run").then((m) => ({ run: m.runStatic, bound: m.staticAlone })),
  bridge: () => import("@tscni/plugin-bridge/run").then((m) => ({ run: m.runBridge, bound: m.bridgeOnLinux })),
  portmap: () => import("@tscni/plugin-portmap/run").then((m) => ({ run: m.runPortmap, bound: m.portmapOnLinux })),
  bandwidth: () => import("@tscni/plugin-bandwidth/run").then((m) => ({ run: m.runBandwidth, bound: m.bandwidthOnLinux })),
  tuning: () => import("@tscni/plugin-tuning/run").then((m) => ({ run: m.runTuning, bound: m.tuningOnLinux })),
  firewall: () => import("@tscni/plugin-firewall/run").then((m) => ({ run: m.runFirewall, bound: m.firewallOnLinux })),
  ptp: () => import("@tscni/plugin-ptp/run").then((m) => ({ run: m.runPtp, bound: m.ptpOnLinux })),
  "tscni-net": () => import("@tscni/plugin-tscni-net/run").then((m) => ({ run: m.runTscniNet, bound: m.tscniNetOnLinux }))
}

/** The plugins this runtime can be, listed in the error for an unknown invocation name. */
export const PLUGIN_NAMES = Object.keys(PLUGINS)

/**
 * The entry of the plugin a name (argv[0] or argv[2]) stands for; undefined for anything
 * else, inherited object keys included.
 */
export const pluginNamed = (name: string): (() => Promise<PluginEntry>) | undefined =>
  Object.hasOwn(PLUGINS, name) ? PLUGINS[name] : undefined
