export * from "./Step.ts"
export * as Pipeline from "./Pipeline.ts"
export { traceStep, type StepPhase } from "./trace.ts"
export { eachOf } from "./eachOf.ts"
