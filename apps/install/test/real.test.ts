/**
 * The installer with the real binaries of dist/bin (skipped when they are not built:
 * `bun run build`, or `cd packages/multicall && bun run build`).
 */
import { afterAll, describe, expect, test } from "bun:test"
import { existsSync, lstatSync, readlinkSync } from "node:fs"
import { join } from "node:path"
import { cleanup, cli, DIST_BIN, put, snapshot, tempDir } from "./helpers.ts"

const TSCNI = join(DIST_BIN, "tscni")
const INSTALLER = join(DIST_BIN, "tscni-install")
const root = tempDir()
afterAll(() => cleanup(root))

const version = (path: string) => {
  const run = Bun.spawnSync([path], {
    env: { CNI_COMMAND: "VERSION", PATH: process.env.PATH ?? "" },
    stdin: new TextEncoder().encode(`{"cniVersion":"1.0.0"}`)
  })
  return { exitCode: run.exitCode, json: JSON.parse(run.stdout.toString()) as { supportedVersions?: Array<string> } }
}

describe.skipIf(!existsSync(TSCNI))("with the real dist/bin/tscni", () => {
  test("multicall: one tscni, links that answer VERSION; --uninstall restores the dir", () => {
    const host = join(root, "multicall")
    const bin = join(host, "bin")
    put(join(bin, "loopback"), "the reference loopback\n", 0o755)
    const before = snapshot(host)
    const run = cli(["--source", DIST_BIN, "--bin-dir", bin, "--plugins", "loopback,bridge"])
    expect(run.stderr).toBe("")
    expect(run.exitCode).toBe(0)
    expect(lstatSync(join(bin, "tscni")).size).toBe(lstatSync(TSCNI).size)
    for (const name of ["loopback", "bridge"]) {
      expect(readlinkSync(join(bin, name))).toBe("tscni")
      const answer = version(join(bin, name))
      expect(answer.exitCode).toBe(0)
      expect(answer.json.supportedVersions).toContain("1.0.0")
    }
    // invoked under its own name it is no plugin: the installer never verifies `tscni` itself
    expect(version(join(bin, "tscni")).exitCode).toBe(1)
    expect(cli(["--uninstall", "--bin-dir", bin]).exitCode).toBe(0)
    expect(snapshot(host)).toEqual(before)
  })

  test("the plugin list comes from the binary itself", () => {
    const run = cli(["--source", DIST_BIN, "--bin-dir", join(root, "dry"), "--dry-run"])
    expect(run.exitCode).toBe(0)
    for (const name of ["loopback", "bridge", "host-local"]) expect(run.stdout).toContain(`link ${join(root, "dry", name)} -> tscni`)
  })
})

describe.skipIf(!existsSync(join(DIST_BIN, "loopback")))("with the real dist/bin/loopback", () => {
  test("plugins mode copies it, mode 0755, and it answers VERSION", () => {
    const bin = join(root, "plugins", "bin")
    const run = cli(["--source", DIST_BIN, "--bin-dir", bin, "--mode", "plugins", "--plugins", "loopback"])
    expect(run.exitCode).toBe(0)
    expect(lstatSync(join(bin, "loopback")).mode & 0o777).toBe(0o755)
    expect(version(join(bin, "loopback")).json.supportedVersions).toContain("1.0.0")
  })
})

describe.skipIf(!existsSync(INSTALLER))("the compiled dist/bin/tscni-install", () => {
  test("defaults --source to its own dir", () => {
    const run = Bun.spawnSync([INSTALLER, "--bin-dir", join(root, "compiled"), "--dry-run", "--mode", "plugins", "--plugins", "loopback"], {
      cwd: root
    })
    expect(run.stderr.toString()).toBe("")
    expect(run.exitCode).toBe(0)
    expect(run.stdout.toString()).toMatch(/^plan +install .*\/compiled\/loopback \(new\)$/m)
    expect(existsSync(join(root, "compiled"))).toBe(false)
  })
})
