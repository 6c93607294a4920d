/** @tscni/steps: the reversible steps plugins are pipelines of, one module per step. */
export * from "./createNetns.ts"
export * from "./vethPair.ts"
export * from "./ensureBridge.ts"
export * from "./attachToBridge.ts"
export * from "./addAddress.ts"
export * from "./addRoute.ts"
export * from "./setSysctl.ts"
export * from "./linkUp.ts"
export * from "./ipamAllocate.ts"
export * from "./nftElements.ts"
export * from "./iptablesPodChains.ts"
export * from "./setLinkOptions.ts"
export * from "./PluginExec.ts"
export * from "./inProcess.ts"
export * from "./attachment.ts"
// Test helpers (faultSweep, fakes) are imported from "@tscni/steps/testing/…" so that
// they, and the mock kernel they use, never end up in a plugin binary.
export { checkFailed, ignoreAbsent, ignoreNotFound } from "./internal.ts"
export {
  errnoCode,
  listFiles,
  LOCK_DIR,
  LockFailure,
  readFileIfExists,
  removeFileIfExists,
  replaceFile,
  withFileLock,
  writeNewFile
} from "@tscni/lock"
export * from "./garbage.ts"
export * from "./masquerade.ts"
