import { afterAll, expect, test } from "bun:test"
import { statfsSync, writeFileSync } from "node:fs"
import { join } from "node:path"
import { settleWrittenFile } from "../src/pageCache.ts"
import { cleanup, tempDir } from "./helpers.ts"

const root = tempDir()
afterAll(() => cleanup(root))

/** Bytes of the file in the page cache, as util-linux's fincore (not our code) reports them. */
const resident = (path: string): number => {
  const run = Bun.spawnSync(["fincore", "--json", "--bytes", "--output", "RES", path])
  if (run.exitCode !== 0) throw new Error(`fincore: ${run.stderr.toString()}`)
  return Number((JSON.parse(run.stdout.toString()) as { fincore: Array<{ res: number | string }> }).fincore[0]!.res)
}

/** tmpfs keeps its files in the page cache: there is nothing to drop (and the advice is taken without effect) */
const TMPFS_MAGIC = 0x01021994

test.skipIf(statfsSync(root).type === TMPFS_MAGIC)("a written file is fsynced and dropped from the page cache (what the installer does to each binary it copies)", () => {
  const path = join(root, "binary")
  writeFileSync(path, Buffer.alloc(4 << 20, 0x5a))
  expect(resident(path)).toBeGreaterThan(1 << 20)
  expect(settleWrittenFile(path)).toBe(true)
  expect(resident(path)).toBe(0)
})
