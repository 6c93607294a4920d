/**
 * What the Bun build options would change, on the smallest plugin (loopback: one netlink
 * request, so nearly all its time is the runtime's). Run as root:
 *   bun tests/bench/build-options.ts [runs]
 * Builds packages/plugins/loopback/src/main.ts several ways into a scratch dir, then runs
 * VERSION and ADD + DEL in a tscni-bench-* namespace, alternating, and prints a markdown
 * table (wall ms, CPU ms, peak RSS). Product code and dist/bin are not touched.
 */
import { existsSync, mkdirSync, readFileSync, writeFileSync } from "node:fs"
import { join, resolve } from "node:path"
import { cleanup, createNetns, setUp, sh } from "./host.ts"
import { execTimed, median, rotate, versionEnv } from "./lib.ts"

const ROOT = resolve(import.meta.dir, "..", "..")
const ENTRY = join(ROOT, "packages", "plugins", "loopback", "src", "main.ts")
const runs = Number(process.argv[2] ?? 30)
const log = (message: string) => console.error(`[build-options] ${message}`)
const work = setUp(log)
const BASE = ["--compile", "--minify", "--format=esm", "--no-compile-autoload-dotenv", "--no-compile-autoload-bunfig"]

const build = (name: string, flags: ReadonlyArray<string>): { path: string } | { error: string } => {
  const out = join(work, name)
  const proc = Bun.spawnSync([process.execPath, "build", ENTRY, ...BASE, ...flags, "--outfile", out], { cwd: work, stdout: "pipe", stderr: "pipe" })
  const stderr = proc.stderr.toString()
  return proc.exitCode === 0 && existsSync(out) && !/^error:/m.test(stderr) ? { path: out } : { error: stderr.split("\n").filter((l) => l.trim()).slice(0, 3).join(" ") }
}

try {
  const pod = `/var/run/netns/${createNetns("buildopts-pod")}`
  const env = (command: string) => ({ ...versionEnv(), CNI_COMMAND: command, CNI_CONTAINERID: "buildopts", CNI_NETNS: pod, CNI_IFNAME: "lo", CNI_PATH: work })
  const stdin = JSON.stringify({ cniVersion: "1.0.0", name: "cni-loopback", type: "loopback" })
  const variants: Array<[string, { path: string } | { error: string }]> = []
  variants.push(["--bytecode (today)", build("today", ["--bytecode"])])
  variants.push(["no bytecode", build("nobc", [])])
  // profile-guided bytecode layout: record an ADD + DEL with the plain build, rebuild with it
  const today = variants[0]![1]
  if ("path" in today) {
    const order = join(work, "loopback.order")
    Bun.spawnSync([today.path], { env: { ...env("ADD"), BUN_BYTECODE_ORDER_OUT: order }, stdin: Buffer.from(stdin) })
    Bun.spawnSync([today.path], { env: { ...env("DEL"), BUN_BYTECODE_ORDER_OUT: order }, stdin: Buffer.from(stdin) })
    variants.push(["--bytecode --bytecode-order", existsSync(order) ? build("ordered", ["--bytecode", `--bytecode-order=${order}`]) : { error: "the run wrote no order file" }])
  }
  variants.push(["--bytecode --splitting (VERSION path in its own chunk)", build("split", ["--bytecode", "--splitting"])])
  variants.push(["--bytecode --compile-exec-argv=--smol", build("smol", ["--bytecode", "--compile-exec-argv=--smol"])])
  variants.push(["--aot (bun compile, experimental)", build("aot", ["--aot"])])
  const usable = variants.filter((v): v is [string, { path: string }] => "path" in v[1])
  log(`built: ${usable.map(([name]) => name).join("; ")}`)
  const times: Record<string, { version: Array<number>; add: Array<number>; del: Array<number>; cpu: Array<number>; ok: boolean }> = {}
  for (const [name] of usable) times[name] = { version: [], add: [], del: [], cpu: [], ok: true }
  for (let i = -2; i < runs; i++) {
    for (const [name, { path }] of rotate(usable, i + 2)) {
      const t = times[name]!
      const version = execTimed([path], versionEnv(), '{"cniVersion":"1.0.0"}')
      const add = execTimed([path], env("ADD"), stdin)
      const del = execTimed([path], env("DEL"), stdin)
      if (add.exitCode !== 0 || del.exitCode !== 0) t.ok = false
      if (i >= 0) {
        t.version.push(version.ms)
        t.add.push(add.ms)
        t.del.push(del.ms)
        t.cpu.push(add.cpuMs)
      }
    }
  }
  const rss = (path: string, command: string) => {
    const out = join(work, "rss.txt")
    Bun.spawnSync(["/usr/bin/time", "-f", "%M", "-o", out, path], { env: command === "VERSION" ? versionEnv() : env(command), stdin: Buffer.from(stdin) })
    const lines = readFileSync(out, "utf8").trim().split("\n")
    return Number(lines[lines.length - 1]) / 1024
  }
  const rows = variants.map(([name, result]) => {
    if ("error" in result) return `| ${name} | build failed: ${result.error.replace(/\|/g, "/").slice(0, 160)} | | | | | | |`
    const t = times[name]!
    const size = Number(sh(["stat", "-c", "%s", result.path]).stdout) / 1048576
    return `| ${name} | ${median(t.version).toFixed(1)} | ${median(t.add).toFixed(1)} | ${median(t.del).toFixed(1)} | ${median(t.cpu).toFixed(1)} | ${rss(result.path, "VERSION").toFixed(1)} | ${rss(result.path, "ADD").toFixed(1)} | ${size.toFixed(1)}${t.ok ? "" : " (ADD/DEL failed!)"} |`
  })
  const table = [
    `Loopback built each way; medians of ${runs} alternating runs (${new Date().toISOString()}, load ${readFileSync("/proc/loadavg", "utf8").split(" ").slice(0, 3).join(" ")}).`,
    "",
    "| build | VERSION ms | ADD ms | DEL ms | ADD CPU ms | VERSION peak RSS MB | ADD peak RSS MB | binary MiB |",
    "|---|---|---|---|---|---|---|---|",
    ...rows,
    ""
  ].join("\n")
  console.log(table)
  mkdirSync(join(ROOT, "docs", "bench"), { recursive: true })
  writeFileSync(join(ROOT, "docs", "bench", "build-options.md"), `# Bun build options, measured on loopback\n\nWritten by \`bun tests/bench/build-options.ts ${runs}\`.\n\n${table}`)
} catch (error) {
  console.error(`build-options: ${error instanceof Error ? error.stack ?? error.message : String(error)}`)
  process.exitCode = 1
} finally {
  cleanup()
}
