/**
 * The multicall binary's own answers, before any plugin runs: VERSION through every link
 * (stdout a pipe, as runtimes read it), and the refusal of a name that is no plugin, which
 * tscni-install reads the plugin list from.
 */
import { afterAll, describe, expect, test } from "bun:test"
import { mkdtempSync, rmSync, symlinkSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { binary, execPlugin } from "./harness.ts"

const PLUGINS = ["loopback", "host-local", "static", "bridge", "portmap", "bandwidth", "tuning", "firewall", "ptp", "tscni-net"]
const dir = mkdtempSync(join(tmpdir(), "tscni-multicall-"))
afterAll(() => rmSync(dir, { recursive: true, force: true }))
const linked = (name: string): string => {
  const path = join(dir, name)
  symlinkSync(binary("tscni"), path)
  return path
}

describe("multicall binary", () => {
  test.each(PLUGINS)("VERSION through the %s link answers on stdout and exits 0", (name) => {
    const out = execPlugin(linked(name), { CNI_COMMAND: "VERSION" }, JSON.stringify({ cniVersion: "1.0.0" }))
    expect(out.exitCode).toBe(0)
    expect(out.stdout).toBe(JSON.stringify({ cniVersion: "1.1.0", supportedVersions: ["0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0"] }) + "\n")
  })

  test("a name that is no plugin is refused with code 4 naming argv[0] and the plugins, exit 1", () => {
    const out = execPlugin(linked("not-a-plugin"), { CNI_COMMAND: "VERSION" }, "{}")
    expect(out.exitCode).toBe(1)
    expect(out.json).toEqual({
      cniVersion: "1.1.0",
      code: 4,
      msg: `argv[0]: 'not-a-plugin' is not a tscni plugin (one of: ${PLUGINS.join(", ")})`
    })
    expect(out.stdout.endsWith("}\n")).toBe(true)
  })

  test("`tscni <plugin>` runs that plugin", () => {
    const out = execPlugin([binary("tscni"), "loopback"], { CNI_COMMAND: "VERSION" }, "{}")
    expect(out.exitCode).toBe(0)
    expect(out.json).toMatchObject({ cniVersion: "1.1.0" })
  })
})
