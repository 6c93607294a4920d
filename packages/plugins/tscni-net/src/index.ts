export { DEFAULT_DATA_DIR, renderDelegate, type TscniNetSettings, tscniNetSettings } from "./config.ts"
export { tscniNetPipeline } from "./pipeline.ts"
export { tscniNetPlugin } from "./plugin.ts"
