/**
 * Fault injection at every file operation: for k = 1, 2, … the k-th HostFs call of an
 * install (or uninstall) fails, and both target dirs must end byte-for-byte as before,
 * with no undo failing. The sweep ends at the first k no call reaches: the clean run.
 */
import { afterAll, describe, expect, test } from "bun:test"
import { mkdirSync, rmSync, symlinkSync } from "node:fs"
import { join } from "node:path"
import { Cause, Exit } from "effect"
import { runInstall } from "../src/install.ts"
import type { RunFailed } from "../src/outcome.ts"
import type { InstallOptions } from "../src/plan.ts"
import { faultyHostFs } from "../src/testing/faults.ts"
import { runUninstall } from "../src/uninstall.ts"
import { cleanup, fakeMulticall, fakePlugin, put, runIn, snapshot, tempDir } from "./helpers.ts"

const PLUGINS = ["bridge", "host-local", "portmap"]
const root = tempDir()
afterAll(() => cleanup(root))

const source = join(root, "dist")
mkdirSync(source)
fakeMulticall(join(source, "tscni"), PLUGINS)
for (const name of PLUGINS) fakePlugin(join(source, name))
const conflistFile = join(root, "10-test.conflist")
put(conflistFile, JSON.stringify({ cniVersion: "1.0.0", name: "test", plugins: [{ type: "bridge" }, { type: "portmap" }] }))

const host = join(root, "host")
const bin = join(host, "opt/cni/bin")
const conf = join(host, "etc/cni/net.d")

type Setup = "empty" | "older files"

/** Puts the host dirs back to a known state. */
const reset = (setup: Setup): void => {
  rmSync(host, { recursive: true, force: true })
  mkdirSync(host)
  if (setup === "empty") return
  put(join(bin, "bridge"), "reference bridge\n", 0o700)
  symlinkSync("bridge", join(bin, "portmap"))
  put(join(bin, "README"), "not ours\n", 0o600)
  put(join(conf, "10-test.conflist"), "{}\n", 0o600)
}

const options = (mode: InstallOptions["mode"]): InstallOptions => ({
  source,
  binDir: bin,
  confDir: conf,
  mode,
  plugins: undefined,
  conflist: { kind: "file", path: conflistFile },
  dryRun: false
})

const runFailedOf = <A>(exit: Exit.Exit<A, RunFailed>): RunFailed | undefined => {
  if (Exit.isSuccess(exit)) return undefined
  const failure = exit.cause.reasons.find(Cause.isFailReason)
  return failure?.error
}

const run = runIn

interface Sweep {
  readonly faulted: ReadonlyArray<{ readonly k: number; readonly operation: string; readonly stage: string }>
  readonly cleanK: number
}

describe.each([
  ["multicall", "empty"],
  ["multicall", "older files"],
  ["plugins", "older files"]
] as const)("install, %s mode, into %s dirs, with a fault at every call", (mode, setup) => {
  const sweep: { value?: Sweep } = {}

  test("every failed run leaves both dirs as before, with no failed undo", async () => {
    const faulted: Array<{ k: number; operation: string; stage: string }> = []
    for (let k = 1; k < 1000; k++) {
      reset(setup)
      const before = snapshot(host)
      const { layer, control } = faultyHostFs()
      control.failNth(k)
      const { exit } = await run(runInstall(options(mode)), layer)
      if (!control.fired()) {
        expect(Exit.isSuccess(exit)).toBe(true)
        sweep.value = { faulted, cleanK: k }
        return
      }
      const failed = runFailedOf(exit)
      const operation = control.calls()[k - 1]?.operation ?? "?"
      // a fault must fail the install: none is silently tolerated
      expect({ k, operation, failed: failed !== undefined }).toEqual({ k, operation, failed: true })
      expect({ k, operation, rollbackFailures: failed?.rollbackFailures }).toEqual({ k, operation, rollbackFailures: [] })
      expect({ k, operation, after: snapshot(host) }).toEqual({ k, operation, after: before })
      faulted.push({ k, operation, stage: failed?.stage ?? "?" })
    }
    throw new Error("the sweep did not end")
  }, 120_000)

  test("the sweep reached every kind of write, in the apply stage", () => {
    const value = sweep.value
    expect(value).toBeDefined()
    const applied = new Set(value?.faulted.filter((run) => run.stage === "apply").map((run) => run.operation))
    const expected = mode === "multicall"
      ? ["copyNew", "symlink", "rename", "syncDir", "writeNew", "lstat", "sha256"]
      : ["copyNew", "rename", "syncDir", "writeNew", "lstat", "sha256"]
    for (const operation of expected) expect(applied).toContain(operation)
    if (setup === "empty") expect(applied).toContain("mkdir")
    else expect(applied).toContain("link")
  })
})

describe("uninstall with a fault at every call", () => {
  test("every failed run leaves the install whole; the clean run restores the original", async () => {
    const install = async () => {
      reset("older files")
      const original = snapshot(host)
      const { exit } = await run(runInstall(options("multicall")))
      expect(Exit.isSuccess(exit)).toBe(true)
      return { original, installed: snapshot(host) }
    }
    let tolerated = 0
    for (let k = 1; k < 1000; k++) {
      const { original, installed } = await install()
      const { layer, control } = faultyHostFs()
      control.failNth(k)
      const { exit } = await run(runUninstall({ binDir: bin, dryRun: false }), layer)
      if (!control.fired()) {
        expect(Exit.isSuccess(exit)).toBe(true)
        expect(snapshot(host)).toEqual(original)
        expect(k).toBeGreaterThan(10)
        return
      }
      const operation = control.calls()[k - 1]?.operation ?? "?"
      const failed = runFailedOf(exit)
      if (failed === undefined) {
        // Past the point of no return (deleting the parked entries): the uninstall is done
        // and says what it could not delete; only such leftovers may remain.
        tolerated++
        const residue = snapshot(host).filter((line) => !original.includes(line))
        expect({ k, operation, residue: residue.every((line) => line.includes(".tscni-removed")) }).toEqual({
          k,
          operation,
          residue: true
        })
        continue
      }
      expect({ k, operation, rollbackFailures: failed.rollbackFailures }).toEqual({ k, operation, rollbackFailures: [] })
      expect({ k, operation, after: snapshot(host) }).toEqual({ k, operation, after: installed })
    }
    expect(tolerated).toBeLessThan(10)
    throw new Error("the sweep did not end")
  }, 240_000)
})
