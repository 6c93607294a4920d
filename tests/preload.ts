/**
 * Loaded before every test file (bunfig.toml [test] preload): one afterAll for the whole
 * run removes whatever network namespaces the integration tests left, whichever file
 * made them. Unit tests never create any, so for them this is a no-op.
 *
 * It also gives the run its own TSCNI_LOCK_DIR (bridge's lock and intent files, the
 * iptables lock) instead of the host's /run/tscni, which real runtimes and other runs use.
 * It must be set here, before any test file loads: bun test shares one module registry
 * across files and the bridge plugin reads the variable when first imported, by whichever
 * file comes first (apps/cni's dry run does, before the bridge's own tests). The compiled
 * binaries integration tests run get a minimal environment without it.
 */
import { afterAll } from "bun:test"
import { mkdtempSync, rmSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"

const ownLockDir = process.env.TSCNI_LOCK_DIR === undefined ? mkdtempSync(join(tmpdir(), "tscni-lock-")) : undefined
if (ownLockDir !== undefined) process.env.TSCNI_LOCK_DIR = ownLockDir

afterAll(async () => {
  // bun test emits no process "exit": the run's last afterAll is where its lock dir goes
  if (ownLockDir !== undefined) rmSync(ownLockDir, { recursive: true, force: true })
  if (process.getuid?.() !== 0) return
  const { cleanupAll } = await import("./integration/harness.ts")
  cleanupAll()
})
