/**
 * The installer as a process, against temp bin/conf dirs with fake plugins (shell scripts):
 * what it installs, what it keeps, what --uninstall puts back, and that every failure
 * leaves both dirs byte-for-byte as they were.
 */
import { afterEach, describe, expect, test } from "bun:test"
import { chmodSync, existsSync, lstatSync, mkdirSync, readFileSync, readlinkSync, symlinkSync, writeFileSync } from "node:fs"
import { join } from "node:path"
import { InstallRecord, RECORD_NAME } from "../src/record.ts"
import { VERSION_TIMEOUT_MS } from "../src/verify.ts"
import { Schema } from "effect"
import { cleanup, cli, fakeMulticall, fakePlugin, MAIN, put, snapshot, tempDir, VERSION_ANSWER } from "./helpers.ts"

const PLUGINS = ["bridge", "host-local", "portmap"]

interface Layout {
  readonly root: string
  readonly source: string
  /** everything the installer may touch is under here */
  readonly host: string
  readonly bin: string
  readonly conf: string
}

const roots: Array<string> = []
afterEach(() => cleanup(...roots.splice(0)))

const layout = (): Layout => {
  const root = tempDir()
  roots.push(root)
  const source = join(root, "dist")
  mkdirSync(source)
  const host = join(root, "host")
  return { root, source, host, bin: join(host, "opt/cni/bin"), conf: join(host, "etc/cni/net.d") }
}

/** A source dir like dist/bin: the multicall binary and one binary per plugin. */
const buildSource = (l: Layout, options: { tag?: string; failing?: ReadonlyArray<string> } = {}): void => {
  fakeMulticall(join(l.source, "tscni"), PLUGINS, options)
  for (const name of PLUGINS) {
    fakePlugin(join(l.source, name), options.failing?.includes(name) ? "fails" : "good", { tag: `${name} ${options.tag ?? ""}` })
  }
  // not plugins: never installed in plugins mode
  fakePlugin(join(l.source, "tscni-install"))
  fakePlugin(join(l.source, "cni"))
}

const conflist = (l: Layout, types: ReadonlyArray<string> = ["bridge", "portmap"]): string => {
  const path = join(l.root, "10-test.conflist")
  writeFileSync(path, JSON.stringify({
    cniVersion: "1.0.0",
    name: "test",
    plugins: types.map((type) => (type === "bridge" ? { type, ipam: { type: "host-local", subnet: "10.1.0.0/24" } } : { type }))
  }))
  return path
}

/** Older files a node may have: reference plugins, a link, an unrelated file and an old conflist. */
const olderFiles = (l: Layout): void => {
  put(join(l.bin, "bridge"), "reference bridge v1.4\n", 0o700)
  put(join(l.bin, "loopback"), "reference loopback\n", 0o755)
  symlinkSync("loopback", join(l.bin, "portmap"))
  put(join(l.bin, "README"), "not ours\n", 0o600)
  put(join(l.conf, "10-test.conflist"), `{"old":true}\n`, 0o600)
  put(join(l.conf, "99-other.conflist"), `{"other":true}\n`, 0o644)
}

const args = (l: Layout, ...extra: ReadonlyArray<string>): ReadonlyArray<string> => [
  "--source",
  l.source,
  "--bin-dir",
  l.bin,
  "--conf-dir",
  l.conf,
  ...extra
]

const readRecord = (l: Layout) => Schema.decodeUnknownSync(InstallRecord)(JSON.parse(readFileSync(join(l.bin, RECORD_NAME), "utf8")))

const runVersion = (path: string) => {
  const run = Bun.spawnSync([path], { env: { CNI_COMMAND: "VERSION" }, stdin: new TextEncoder().encode(`{"cniVersion":"1.0.0"}`) })
  return { exitCode: run.exitCode, stdout: run.stdout.toString() }
}

describe("install", () => {
  test("into empty dirs: creates them, copies tscni once, links every plugin, records it; --uninstall removes it all", () => {
    const l = layout()
    buildSource(l)
    const before = snapshot(l.host)
    const run = cli(args(l, "--conflist", conflist(l)))
    expect(run.stderr).toBe("")
    expect(run.exitCode).toBe(0)
    expect(run.stdout).toMatch(/^ok +mkdir .*opt .*cni .*bin/m)
    expect(run.stdout).toMatch(/^ok +install .*\/tscni \(new\)$/m)
    for (const name of PLUGINS) {
      expect(readlinkSync(join(l.bin, name))).toBe("tscni")
      expect(run.stdout).toMatch(new RegExp(`^ok +verify ${name}: VERSION lists .*1\\.0\\.0`, "m"))
      const answer = runVersion(join(l.bin, name))
      expect(answer.exitCode).toBe(0)
      expect(JSON.parse(answer.stdout).supportedVersions).toContain("1.0.0")
    }
    expect(existsSync(join(l.bin, "tscni-install"))).toBe(false)
    expect(lstatSync(join(l.bin, "tscni")).mode & 0o777).toBe(0o755)
    expect(lstatSync(join(l.conf, "10-test.conflist")).mode & 0o777).toBe(0o644)
    const record = readRecord(l)
    expect(record.entries.map((entry) => entry.path)).toEqual([
      join(l.bin, "tscni"),
      ...PLUGINS.map((name) => join(l.bin, name)),
      join(l.conf, "10-test.conflist")
    ])
    expect(record.entries.every((entry) => entry.backup === null)).toBe(true)
    expect(record.createdDirs).toContain(l.bin)
    expect(record.createdDirs).toContain(l.conf)
    // no temp files left behind
    expect(snapshot(l.host).filter((line) => line.includes("tscni-tmp"))).toEqual([])

    const undo = cli(["--uninstall", "--bin-dir", l.bin])
    expect(undo.stderr).toBe("")
    expect(undo.exitCode).toBe(0)
    expect(undo.stdout).toMatch(/^ok +remove .*\/tscni$/m)
    expect(snapshot(l.host)).toEqual(before)
  })

  test("over older files: they are kept as backups, and --uninstall puts them back exactly", () => {
    const l = layout()
    buildSource(l)
    olderFiles(l)
    const before = snapshot(l.host)
    const run = cli(args(l, "--conflist", conflist(l)))
    expect(run.stderr).toBe("")
    expect(run.exitCode).toBe(0)
    expect(readFileSync(join(l.bin, ".bridge.tscni-prev"), "utf8")).toBe("reference bridge v1.4\n")
    expect(lstatSync(join(l.bin, ".bridge.tscni-prev")).mode & 0o777).toBe(0o700)
    expect(readlinkSync(join(l.bin, ".portmap.tscni-prev"))).toBe("loopback")
    expect(readFileSync(join(l.conf, ".10-test.conflist.tscni-prev"), "utf8")).toBe(`{"old":true}\n`)
    expect(readFileSync(join(l.bin, "README"), "utf8")).toBe("not ours\n")
    expect(run.stdout).toMatch(/^ok +link .*\/bridge -> tscni \(replaced; the previous one is kept as \.bridge\.tscni-prev\)$/m)
    const record = readRecord(l)
    expect(record.entries.find((entry) => entry.path.endsWith("/bridge"))?.backup).toBe(join(l.bin, ".bridge.tscni-prev"))

    const undo = cli(["--uninstall", "--bin-dir", l.bin])
    expect(undo.exitCode).toBe(0)
    expect(undo.stdout).toMatch(/^ok +restore .*\/bridge from \.bridge\.tscni-prev$/m)
    expect(snapshot(l.host)).toEqual(before)
  })

  test("plugins mode copies each plugin's own binary (and only plugins)", () => {
    const l = layout()
    buildSource(l)
    olderFiles(l)
    const before = snapshot(l.host)
    const run = cli(args(l, "--mode", "plugins"))
    expect(run.stderr).toBe("")
    expect(run.exitCode).toBe(0)
    for (const name of PLUGINS) {
      expect(lstatSync(join(l.bin, name)).isFile()).toBe(true)
      expect(readFileSync(join(l.bin, name))).toEqual(readFileSync(join(l.source, name)))
    }
    expect(existsSync(join(l.bin, "tscni"))).toBe(false)
    expect(existsSync(join(l.bin, "cni"))).toBe(false)
    expect(cli(["--uninstall", "--bin-dir", l.bin]).exitCode).toBe(0)
    expect(snapshot(l.host)).toEqual(before)
  })

  test("--plugins installs only those", () => {
    const l = layout()
    buildSource(l)
    const run = cli(args(l, "--plugins", "bridge"))
    expect(run.exitCode).toBe(0)
    expect(existsSync(join(l.bin, "bridge"))).toBe(true)
    expect(existsSync(join(l.bin, "portmap"))).toBe(false)
  })

  test("a second identical install changes nothing and writes no new record", () => {
    const l = layout()
    buildSource(l)
    olderFiles(l)
    expect(cli(args(l)).exitCode).toBe(0)
    const after = snapshot(l.host)
    const again = cli(args(l))
    expect(again.exitCode).toBe(0)
    expect(again.stdout).toMatch(/^ok +install .*\/tscni \(unchanged\)$/m)
    expect(again.stdout).toMatch(/nothing changed/)
    expect(snapshot(l.host)).toEqual(after)
  })

  test("installs stack: --uninstall undoes the last one, a second --uninstall the one before", () => {
    const l = layout()
    olderFiles(l)
    const original = snapshot(l.host)
    buildSource(l, { tag: "v1" })
    expect(cli(args(l)).exitCode).toBe(0)
    const afterV1 = snapshot(l.host)
    buildSource(l, { tag: "v2" })
    const v2 = cli(args(l))
    expect(v2.exitCode).toBe(0)
    expect(v2.stdout).toMatch(/^ok +install .*\/tscni \(replaced/m)
    expect(readFileSync(join(l.bin, "tscni"), "utf8")).toContain("v2")
    expect(cli(["--uninstall", "--bin-dir", l.bin]).exitCode).toBe(0)
    expect(snapshot(l.host)).toEqual(afterV1)
    expect(cli(["--uninstall", "--bin-dir", l.bin]).exitCode).toBe(0)
    expect(snapshot(l.host)).toEqual(original)
    const third = cli(["--uninstall", "--bin-dir", l.bin])
    expect(third.exitCode).toBe(1)
    expect(third.stderr).toMatch(/no install record/)
  })

  test("--dry-run prints the plan and changes nothing", () => {
    const l = layout()
    buildSource(l)
    olderFiles(l)
    const before = snapshot(l.host)
    const run = cli(args(l, "--conflist", conflist(l), "--dry-run"))
    expect(run.exitCode).toBe(0)
    expect(run.stdout).toMatch(/^plan +install .*\/tscni \(new\)$/m)
    expect(run.stdout).toMatch(/^plan +link .*\/bridge -> tscni \(replaces the file there, kept as \.bridge\.tscni-prev\)$/m)
    expect(run.stdout).toMatch(/^plan +link .*\/portmap -> tscni \(replaces the symlink there/m)
    expect(run.stdout).toMatch(/^plan +verify host-local/m)
    expect(run.stdout).toMatch(/^plan +install .*10-test\.conflist \(replaces/m)
    expect(run.stdout).not.toMatch(/^ok/m)
    expect(snapshot(l.host)).toEqual(before)
  })

  test("--uninstall --dry-run changes nothing", () => {
    const l = layout()
    buildSource(l)
    olderFiles(l)
    expect(cli(args(l)).exitCode).toBe(0)
    const installed = snapshot(l.host)
    const run = cli(["--uninstall", "--bin-dir", l.bin, "--dry-run"])
    expect(run.exitCode).toBe(0)
    expect(run.stdout).toMatch(/^plan +restore .*\/bridge from \.bridge\.tscni-prev$/m)
    expect(snapshot(l.host)).toEqual(installed)
  })

  test("--uninstall refuses (and changes nothing) when an installed file was changed since", () => {
    const l = layout()
    buildSource(l)
    expect(cli(args(l)).exitCode).toBe(0)
    writeFileSync(join(l.bin, "tscni"), "someone else's tscni")
    const changed = snapshot(l.host)
    const run = cli(["--uninstall", "--bin-dir", l.bin])
    expect(run.exitCode).toBe(1)
    expect(run.stderr).toMatch(/refusing to uninstall: .*tscni has changed since it was installed/)
    expect(run.stderr).toMatch(/nothing was changed/)
    expect(snapshot(l.host)).toEqual(changed)
  })
})

describe("install failures leave both dirs as they were", () => {
  const expectRolledBack = (l: Layout, before: ReadonlyArray<string>, run: ReturnType<typeof cli>): void => {
    expect(run.exitCode).toBe(1)
    expect(run.stderr).toMatch(/^tscni-install: install failed: /m)
    expect(run.stderr).toMatch(/every change was rolled back/)
    expect(snapshot(l.host)).toEqual(before)
  }

  test("a plugin failing VERSION (plugins mode): everything copied before it is undone", () => {
    const l = layout()
    buildSource(l, { failing: ["portmap"] })
    olderFiles(l)
    const before = snapshot(l.host)
    const run = cli(args(l, "--mode", "plugins", "--conflist", conflist(l)))
    expectRolledBack(l, before, run)
    expect(run.stdout).toMatch(/^failed +verify portmap .*VERSION exited with 1: .*broken build/m)
    expect(run.stdout).toMatch(/^undone +restore .*\/bridge from \.bridge\.tscni-prev$/m)
    expect(run.stdout).toMatch(/^undone +remove .*\/host-local$/m)
    expect(run.stdout).not.toMatch(/10-test\.conflist/)
  })

  test("a multicall link failing VERSION", () => {
    const l = layout()
    buildSource(l, { failing: ["host-local"] })
    olderFiles(l)
    const before = snapshot(l.host)
    const run = cli(args(l, "--conflist", conflist(l)))
    expectRolledBack(l, before, run)
    expect(run.stdout).toMatch(/^failed +verify host-local/m)
  })

  test.each([
    ["old", /does not support CNI 1\.0\.0/],
    ["garbage", /VERSION printed no JSON/]
  ] as const)("a plugin answering VERSION %s", (behaviour, message) => {
    const l = layout()
    buildSource(l)
    fakePlugin(join(l.source, "portmap"), behaviour)
    olderFiles(l)
    const before = snapshot(l.host)
    const run = cli(args(l, "--mode", "plugins"))
    expectRolledBack(l, before, run)
    expect(run.stdout).toMatch(message)
  })

  test("a source that is not executable is refused before anything is touched", () => {
    const l = layout()
    buildSource(l)
    chmodSync(join(l.source, "portmap"), 0o644)
    olderFiles(l)
    const before = snapshot(l.host)
    const run = cli(args(l, "--mode", "plugins", "--plugins", "bridge,portmap"))
    expect(run.exitCode).toBe(2)
    expect(run.stderr).toMatch(/no executable for portmap/)
    expect(run.stderr).toMatch(/nothing was changed/)
    expect(run.stdout).toBe("")
    expect(snapshot(l.host)).toEqual(before)
  })

  test("a conf dir that cannot be made (a file is in the way)", () => {
    const l = layout()
    buildSource(l)
    olderFiles(l)
    // /etc/cni/net.d is a file: the conflist cannot go there
    const conf = join(l.host, "etc/cni/not-a-dir")
    put(conf, "x")
    const before = snapshot(l.host)
    const run = cli(["--source", l.source, "--bin-dir", l.bin, "--conf-dir", join(conf, "net.d"), "--conflist", conflist(l)])
    expectRolledBack(l, before, run)
    expect(run.stdout).toMatch(/^failed +mkdir /m)
  })

  test("a target that is a directory: the steps before it are undone", () => {
    const l = layout()
    buildSource(l)
    olderFiles(l)
    // the conflist's name is taken by a directory
    const file = join(l.root, "sub")
    mkdirSync(file)
    mkdirSync(join(l.conf, "20-dir.conflist"))
    writeFileSync(join(file, "20-dir.conflist"), readFileSync(conflist(l)))
    const before = snapshot(l.host)
    const run = cli(args(l, "--conflist", join(file, "20-dir.conflist")))
    expectRolledBack(l, before, run)
    expect(run.stdout).toMatch(/^failed +install .*20-dir\.conflist: is a directory/m)
    expect(run.stdout).toMatch(/^undone +remove .*\/tscni$/m)
  })

  test.skipIf(process.getuid?.() === 0)("a read-only conf dir (not as root: root ignores modes)", () => {
    const l = layout()
    buildSource(l)
    olderFiles(l)
    chmodSync(l.conf, 0o555)
    const before = snapshot(l.host)
    const run = cli(args(l, "--conflist", conflist(l)))
    expectRolledBack(l, before, run)
  })

  const canMount = process.getuid?.() === 0 && Bun.spawnSync(["unshare", "-m", "true"]).exitCode === 0
  test.skipIf(!canMount)("a read-only conf dir (root: a read-only bind mount in a private mount namespace)", () => {
    const l = layout()
    buildSource(l)
    olderFiles(l)
    const before = snapshot(l.host)
    const script = [
      `mount --bind '${l.conf}' '${l.conf}'`,
      `mount -o remount,ro,bind '${l.conf}'`,
      `exec '${process.execPath}' '${MAIN}' ${args(l, "--conflist", conflist(l)).map((arg) => `'${arg}'`).join(" ")}`
    ].join(" && ")
    const child = Bun.spawnSync(["unshare", "-m", "sh", "-c", script], { env: { PATH: process.env.PATH ?? "/usr/bin:/bin" } })
    const run = { exitCode: child.exitCode, stdout: child.stdout.toString(), stderr: child.stderr.toString() }
    expectRolledBack(l, before, run)
    // the binaries were installed and verified before the conflist failed: all undone
    expect(run.stdout).toMatch(/^ok +verify portmap/m)
    expect(run.stdout).toMatch(/^failed +install .*10-test\.conflist: .*(EROFS|read-only)/im)
    expect(run.stdout).toMatch(/^undone +restore .*\/bridge from \.bridge\.tscni-prev$/m)
  })

  test("SIGTERM while a plugin is being verified rolls back", async () => {
    const l = layout()
    buildSource(l)
    fakePlugin(join(l.source, "portmap"), "slow")
    olderFiles(l)
    const before = snapshot(l.host)
    const child = Bun.spawn([process.execPath, join(import.meta.dir, "../src/main.ts"), ...args(l, "--mode", "plugins")], {
      env: { PATH: process.env.PATH ?? "/usr/bin:/bin" },
      stdout: "pipe",
      stderr: "pipe"
    })
    // wait until the slow VERSION is running: host-local (before portmap) is verified
    const deadline = Date.now() + 20_000
    let seen = ""
    const reader = child.stdout.getReader()
    while (!/ok +verify host-local/.test(seen) && Date.now() < deadline) {
      const chunk = await reader.read()
      if (chunk.done) break
      seen += new TextDecoder().decode(chunk.value)
    }
    expect(seen).toMatch(/ok +verify host-local/)
    child.kill("SIGTERM")
    const started = Date.now()
    const exitCode = await child.exited
    // A running step is not cut short (engine rule): the slow VERSION finishes, then all is undone.
    expect(Date.now() - started).toBeLessThan(VERSION_TIMEOUT_MS)
    expect(exitCode).toBe(1)
    expect(await new Response(child.stderr).text()).toMatch(/every change was rolled back/)
    expect(snapshot(l.host)).toEqual(before)
  }, 30_000)
})

describe("usage", () => {
  test("--help", () => {
    const run = cli(["--help"])
    expect(run.exitCode).toBe(0)
    expect(run.stdout).toMatch(/--conflist-template FILE/)
  })

  test("an unknown option is exit 2", () => {
    const run = cli(["--bin-dir"])
    expect(run.exitCode).toBe(2)
    expect(run.stderr).toMatch(/--bin-dir needs a value/)
  })

  test("a missing source dir is exit 2 and changes nothing", () => {
    const l = layout()
    const run = cli(["--source", join(l.root, "nope"), "--bin-dir", l.bin])
    expect(run.exitCode).toBe(2)
    expect(run.stderr).toMatch(/source dir .* does not exist/)
    expect(existsSync(l.host)).toBe(false)
  })

  test("a plugin the multicall binary does not serve is refused", () => {
    const l = layout()
    buildSource(l)
    const run = cli(args(l, "--plugins", "bridge,flannel"))
    expect(run.exitCode).toBe(2)
    expect(run.stderr).toMatch(/tscni does not serve flannel \(it serves: bridge, host-local, portmap\)/)
    expect(existsSync(l.host)).toBe(false)
  })

  test("the fake plugin answers VERSION as a plugin does (the fixtures are sound)", () => {
    const l = layout()
    buildSource(l)
    expect(runVersion(join(l.source, "bridge"))).toEqual({ exitCode: 0, stdout: VERSION_ANSWER })
  })
})
