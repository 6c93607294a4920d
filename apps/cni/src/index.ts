/** @tscni/cni as a library: the runtime operations the `cni` binary is made of. */
export { type LoadedList, listNetworks, loadNetwork } from "./conflist.ts"
export { chooseVersion, negotiateListVersion } from "./version.ts"
export { bandwidthFromAnnotations, buildPluginConfig, type CapabilityArgs, capabilityArgs } from "./capabilities.ts"
export { type CacheEntry, cachePath, listCache, readCache } from "./cache.ts"
export type { Attachment, ChainSpec, ValidAttachment } from "./chain.ts"
export { Progress } from "./invoke.ts"
export { addNetwork, checkNetwork, delNetwork, gcNetwork, type Network, openNetwork, type RuntimeDirs, statusNetwork } from "./runtime.ts"
export { PluginFailed } from "./errors.ts"
