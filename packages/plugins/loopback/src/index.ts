export { loopbackPipeline, type LoopbackInput } from "./pipeline.ts"
export { loopbackPlugin } from "./plugin.ts"
