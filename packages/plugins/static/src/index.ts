export { runStatic } from "./run.ts"
