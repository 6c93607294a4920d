/**
 * @tscni/ipam: the IPAM plugins host-local and static as PluginDefinitions, so their
 * binaries and other plugins (running IPAM in-process) share one implementation.
 */
export { hostLocalPlugin, reclaimAfterReboot } from "./hostLocal/plugin.ts"
export {
  DEFAULT_DATA_DIR,
  type HostLocalConfig,
  loadHostLocalConfig,
  type Range,
  type RangeSet,
  requestedTexts,
  resolveRequested
} from "./hostLocal/config.ts"
export { candidates, capacity, describeSet, nextFree, rangeFor } from "./hostLocal/allocate.ts"
export {
  type Allocation,
  IpamStore,
  type IpamStoreShape,
  makeNetworkStore,
  type NetworkStore,
  type Owner,
  ownedBy,
  StoreError,
  type StoreFiles
} from "./hostLocal/store.ts"
export { diskFiles, diskStoreLayer } from "./hostLocal/diskStore.ts"
export { type MemoryState, memoryStore, newMemoryState } from "./hostLocal/memoryStore.ts"
export { staticPlugin } from "./static/plugin.ts"
export { loadStaticConfig, type StaticConfig } from "./static/config.ts"
