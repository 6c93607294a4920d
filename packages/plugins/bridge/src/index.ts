export { type BridgeSettings, bridgeSettings } from "./config.ts"
export * from "./names.ts"
export { type BridgeInput, bridgePipeline } from "./pipeline.ts"
export { bridgePlugin } from "./plugin.ts"
