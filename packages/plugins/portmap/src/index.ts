export { type PortmapSettings, portmapSettings } from "./config.ts"
export { type PortmapInput, portmapPipeline } from "./pipeline.ts"
export { podAddresses, podIps, portmapPlugin } from "./plugin.ts"
export {
  HOSTPORT_ENTRY,
  HOSTPORT_MASQ_ENTRY,
  hostportChains,
  LEGACY_CHAINS,
  LEGACY_TABLES,
  markOf,
  portmapElements,
  portmapPodBatches,
  portmapTable,
  portmapTablePrefix
} from "./rules.ts"
