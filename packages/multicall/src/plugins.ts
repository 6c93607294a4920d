/** Each plugin's process entry, loaded only when that plugin is the one invoked. */
const PLUGINS: Record<string, () => Promise<void>> = {
  loopback: () => import("@tscni/plugin-loopback/run").then((module) => module.runLoopback()),
  "host-local": () => import("@tscni/plugin-host-local/run").then((module) => module.runHostLocal()),
  static: () => import("@tscni/plugin-static/run").then((module) => module.runStatic()),
  bridge: () => import("@tscni/plugin-bridge/run").then((module) => module.runBridge()),
  portmap: () => import("@tscni/plugin-portmap/run").then((module) => module.runPortmap()),
  bandwidth: () => import("@tscni/plugin-bandwidth/run").then((module) => module.runBandwidth()),
  tuning: () => import("@tscni/plugin-tuning/run").then((module) => module.runTuning()),
  firewall: () => import("@tscni/plugin-firewall/run").then((module) => module.runFirewall())
}

/** The plugins this runtime can be, listed in the error for an unknown invocation name. */
export const PLUGIN_NAMES = Object.keys(PLUGINS)

/**
 * The entry of the plugin a name (argv[0] or argv[2]) stands for; undefined for anything
 * else, inherited object keys included.
 */
export const pluginNamed = (name: string): (() => Promise<void>) | undefined =>
  Object.hasOwn(PLUGINS, name) ? PLUGINS[name] : undefined
