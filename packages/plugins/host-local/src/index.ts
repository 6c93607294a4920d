export { runHostLocal } from "./run.ts"
