export * from "./Step.ts"
export * as Pipeline from "./Pipeline.ts"
export { traceStep, type StepPhase } from "./trace.ts"
