export { type PtpSettings, ptpSettings } from "./config.ts"
export * from "./names.ts"
export { type PtpInput, ptpPipeline } from "./pipeline.ts"
export { ptpPlugin } from "./plugin.ts"
