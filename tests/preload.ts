/**
 * Loaded before every test file (bunfig.toml [test] preload): one afterAll for the whole
 * run removes whatever network namespaces the integration tests left, whichever file
 * made them. Unit tests never create any, so for them this is a no-op.
 */
import { afterAll } from "bun:test"

afterAll(async () => {
  if (process.getuid?.() !== 0) return
  const { cleanupAll } = await import("./integration/harness.ts")
  cleanupAll()
})
