import { netnsThroughBackend, runBackendContract } from "@tscni/backend/contract"
import { layer } from "../src/index.ts"

// The same contract the mock passes, on the real kernel (root; fresh namespaces per test).
if (process.getuid?.() !== 0) throw new Error("the LinuxBackend contract needs root")
runBackendContract("LinuxBackend", () => layer, netnsThroughBackend)
