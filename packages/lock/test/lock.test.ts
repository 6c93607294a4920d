import { afterAll, describe, expect, test } from "bun:test"
import { existsSync, mkdtempSync, rmSync, statSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { Effect } from "effect"
import { withFileLock } from "../src/index.ts"

const root = mkdtempSync(join(tmpdir(), "tscni-lock-test-"))
afterAll(() => rmSync(root, { recursive: true, force: true }))

describe("withFileLock", () => {
  test("creates the lock file's missing directory (root-only) before taking the lock", async () => {
    const lock = join(root, "not", "yet", "there.lock")
    const result = await Effect.runPromise(withFileLock(lock, Effect.succeed("held"), (failure) => failure))
    expect(result).toBe("held")
    expect(existsSync(lock)).toBe(true)
    expect(statSync(join(root, "not", "yet")).mode & 0o777).toBe(0o700)
  })
})
