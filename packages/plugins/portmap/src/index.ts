export { type PortmapSettings, portmapSettings } from "./config.ts"
export { type PortmapInput, portmapPipeline } from "./pipeline.ts"
export { podAddresses, podIps, portmapPlugin } from "./plugin.ts"
export { markOf, PORTMAP_DNAT_CHAIN, PORTMAP_MASQ_CHAIN, PORTMAP_TABLE, portmapIptablesBatches, portmapRules } from "./rules.ts"
