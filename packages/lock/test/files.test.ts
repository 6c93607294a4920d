import { afterAll, describe, expect, test } from "bun:test"
import { constants, existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { listFiles, readFileIfExists, removeFileIfExists, replaceFile, writeNewFile } from "../src/index.ts"

const dir = mkdtempSync(join(tmpdir(), "tscni-files-"))
afterAll(() => rmSync(dir, { recursive: true, force: true }))

describe("state file primitives", () => {
  test("a missing file or directory is an answer: undefined, [], and removal is a no-op", () => {
    expect(readFileIfExists(join(dir, "absent"))).toBeUndefined()
    expect(listFiles(join(dir, "no-such-dir"))).toEqual([])
    removeFileIfExists(join(dir, "absent"))
    expect(readdirSync(dir)).toEqual([])
  })

  test("other errors are thrown, not taken for absence", () => {
    writeFileSync(join(dir, "plain"), "x")
    // a path through a regular file is ENOTDIR, not ENOENT
    expect(() => readFileIfExists(join(dir, "plain", "inner"))).toThrow()
    expect(() => listFiles(join(dir, "plain"))).toThrow()
    rmSync(join(dir, "plain"))
  })

  test("listFiles names regular files only; removeFileIfExists removes", () => {
    const sub = join(dir, "list")
    mkdirSync(join(sub, "a-dir"), { recursive: true })
    writeFileSync(join(sub, "one"), "1")
    writeFileSync(join(sub, "two"), "2")
    expect(listFiles(sub).sort()).toEqual(["one", "two"])
    removeFileIfExists(join(sub, "one"))
    expect(listFiles(sub)).toEqual(["two"])
  })

  test("replaceFile swaps the content in whole and leaves no temp file; an existing temp is refused", () => {
    const path = join(dir, "state.json")
    replaceFile(path, `${path}.tmp`, "first")
    replaceFile(path, `${path}.tmp`, "second")
    expect(readFileSync(path, "utf8")).toBe("second")
    expect(existsSync(`${path}.tmp`)).toBe(false)
    writeFileSync(`${path}.tmp`, "someone else's")
    expect(() => replaceFile(path, `${path}.tmp`, "third")).toThrow()
    expect(readFileSync(path, "utf8")).toBe("second")
    expect(readFileSync(`${path}.tmp`, "utf8")).toBe("someone else's")
  })

  test("writeNewFile with O_EXCL does not overwrite", () => {
    const path = join(dir, "exclusive")
    writeNewFile(path, "mine", constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL)
    expect(() => writeNewFile(path, "theirs", constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL)).toThrow()
    expect(readFileSync(path, "utf8")).toBe("mine")
  })
})
