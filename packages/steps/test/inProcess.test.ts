import { describe, expect, test } from "bun:test"
import { mkdtempSync, rmSync, symlinkSync, writeFileSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { Effect, Option } from "effect"
import { type ExecRequest, makePluginExec, withInProcess } from "../src/index.ts"

const request = (path: string): ExecRequest => ({ path, command: "ADD", env: { CNI_COMMAND: "ADD" }, stdin: "{}" })

describe("withInProcess", () => {
  const dir = mkdtempSync(join(tmpdir(), "tscni-inproc-"))
  const self = join(dir, "tscni")
  writeFileSync(self, "#!/bin/sh\n")
  symlinkSync(self, join(dir, "host-local"))
  writeFileSync(join(dir, "static"), "#!/bin/sh\n") // another binary, same name as a known plugin

  const calls: Array<string> = []
  const real = makePluginExec({
    exec: (r) => Effect.sync(() => (calls.push(`exec ${r.path}`), { exitCode: 0, stdout: "exec", stderr: "" })),
    lookup: () => Effect.succeed(Option.none())
  })
  const inProcess = (name: string) => (r: ExecRequest) =>
    Effect.sync(() => (calls.push(`in-process ${name} ${r.env.CNI_COMMAND}`), { exitCode: 0, stdout: "in-process", stderr: "" }))
  const exec = withInProcess(real, { "host-local": inProcess("host-local"), static: inProcess("static") }, self)

  test("a plugin found as this very executable runs in-process", async () => {
    expect((await Effect.runPromise(exec.exec(request(join(dir, "host-local"))))).stdout).toBe("in-process")
  })
  test("a binary that is not this executable is exec'd, even under a known name", async () => {
    expect((await Effect.runPromise(exec.exec(request(join(dir, "static"))))).stdout).toBe("exec")
    expect((await Effect.runPromise(exec.exec(request("/usr/lib/cni/host-local")))).stdout).toBe("exec")
  })
  test("an unknown plugin is exec'd", async () => {
    symlinkSync(self, join(dir, "dhcp"))
    expect((await Effect.runPromise(exec.exec(request(join(dir, "dhcp"))))).stdout).toBe("exec")
    expect(calls).toContain("in-process host-local ADD")
    rmSync(dir, { recursive: true, force: true })
  })
})
