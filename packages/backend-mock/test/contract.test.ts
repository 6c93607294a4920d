import { netnsThroughBackend, runBackendContract } from "@tscni/backend/contract"
import { layer } from "../src/index.ts"

runBackendContract("MockBackend", () => layer, netnsThroughBackend)
