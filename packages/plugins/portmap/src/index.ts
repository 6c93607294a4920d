export { type PortmapSettings, portmapSettings } from "./config.ts"
export { type PortmapInput, portmapPipeline } from "./pipeline.ts"
export { podIps, portmapPlugin } from "./plugin.ts"
export { PORTMAP_TABLE, portmapRules } from "./rules.ts"
