export { DEFAULT_OPTIONS, resolveSysctlKey, type TuningOptions, type TuningSettings, tuningSettings } from "./config.ts"
export { type TuningInput, tuningPipeline } from "./pipeline.ts"
export { makeTuningPlugin } from "./plugin.ts"
export { statePath } from "./state.ts"
