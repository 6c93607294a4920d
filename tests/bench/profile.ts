/**
 * Where a tscni invocation's time goes, for the lead (run as root, about a minute):
 *   bun tests/bench/profile.ts [runs]
 * Writes docs/bench/profile.md (and profile.json): process start vs module loading vs
 * work (instrumented builds of each plugin: the same entry, compiled the same way, with
 * timestamps), the TSCNI_LOG=debug step durations, IPAM delegation, bytecode on/off,
 * syscall counts (strace -f -c) against the reference, and bundle sizes. Nothing here is
 * a pass/fail test.
 */
import { existsSync, mkdirSync, readdirSync, statSync, writeFileSync } from "node:fs"
import { join, resolve } from "node:path"
import { cleanup, runInHost, setUp, sh } from "./host.ts"
import { median, type ProfileOutcome, type ProfileSample, type Variant } from "./lib.ts"

const ROOT = resolve(import.meta.dir, "..", "..")
const DIST = join(ROOT, "dist", "bin")
const OUT_DIR = join(ROOT, "docs", "bench")
const runs = Number(process.argv[2] ?? 10)
const PLUGINS: Record<string, { dir: string; run: string }> = {
  loopback: { dir: "loopback", run: "runLoopback" },
  bridge: { dir: "bridge", run: "runBridge" },
  portmap: { dir: "portmap", run: "runPortmap" },
  "host-local": { dir: "host-local", run: "runHostLocal" }
}

const started = Bun.nanoseconds()
const log = (message: string) => console.log(`[profile ${((Bun.nanoseconds() - started) / 1e9).toFixed(0).padStart(4)}s] ${message}`)
const work = setUp(log)

const FLAGS = ["--compile", "--minify", "--format=esm", "--no-compile-autoload-dotenv", "--no-compile-autoload-bunfig"]

/**
 * The plugin's own run module behind an entry that timestamps its first line, the end of
 * the import of the plugin's module graph, and exit (to PROBE_OUT). Everything else is as
 * in the plugin's main.ts: same bundle, same flags.
 */
const buildProbe = (plugin: string, bytecode: boolean): string => {
  const dir = join(work, bytecode ? "probe" : "probe-nobc")
  mkdirSync(dir, { recursive: true })
  const { dir: pkg, run } = PLUGINS[plugin]!
  const entry = join(dir, `${plugin}.ts`)
  writeFileSync(entry, [
    "const now = () => performance.timeOrigin + performance.now()",
    "const marks = [[\"main\", now()]]",
    "import { writeFileSync } from \"node:fs\"",
    "process.on(\"exit\", () => { marks.push([\"exit\", now()]); if (process.env.PROBE_OUT) writeFileSync(process.env.PROBE_OUT, JSON.stringify(marks)) })",
    `const plugin = await import(${JSON.stringify(join(ROOT, "packages", "plugins", pkg, "src", "run.ts"))})`,
    "marks.push([\"imported\", now()])",
    `await plugin.${run}()`,
    ""
  ].join("\n"))
  const out = join(dir, plugin)
  const build = Bun.spawnSync([process.execPath, "build", entry, ...FLAGS, ...(bytecode ? ["--bytecode"] : []), "--outfile", out], { cwd: dir, stdout: "pipe", stderr: "pipe" })
  if (build.exitCode !== 0 || !existsSync(out)) throw new Error(`probe ${plugin}: ${build.stderr.toString()}`)
  return out
}

/** Bundle sizes: the whole plugin, and with --splitting what VERSION needs vs the rest. */
const bundleSizes = () =>
  Object.entries(PLUGINS).map(([plugin, { dir }]) => {
    const main = join(ROOT, "packages", "plugins", dir, "src", "main.ts")
    const single = join(work, "bundle", plugin)
    const split = join(work, "bundle-split", plugin)
    sh([process.execPath, "build", main, "--minify", "--target=bun", "--format=esm", "--outdir", single])
    sh([process.execPath, "build", main, "--minify", "--target=bun", "--format=esm", "--splitting", "--outdir", split])
    const sizeOf = (dir: string) => (existsSync(dir) ? readdirSync(dir).map((file) => ({ file, bytes: statSync(join(dir, file)).size })) : [])
    return { plugin, single: sizeOf(single), split: sizeOf(split), binary: existsSync(join(DIST, plugin)) ? statSync(join(DIST, plugin)).size : 0 }
  })

const fmt = (value: number | undefined, digits = 1) => (value === undefined || Number.isNaN(value) ? "–" : value.toFixed(digits))
const table = (header: ReadonlyArray<string>, rows: ReadonlyArray<ReadonlyArray<string>>) =>
  [`| ${header.join(" | ")} |`, `|${header.map(() => "---").join("|")}|`, ...rows.map((row) => `| ${row.join(" | ")} |`)].join("\n")
const med = (samples: ReadonlyArray<ProfileSample> | undefined, pick: (s: ProfileSample) => number | undefined) => {
  const values = (samples ?? []).map(pick).filter((v): v is number => v !== undefined)
  return values.length === 0 ? undefined : median(values)
}

const render = (p: ProfileOutcome, bundles: ReturnType<typeof bundleSizes>, emptyBinary: number): string => {
  const out: Array<string> = ["# Where tscni's time goes", ""]
  out.push(`Written by \`bun tests/bench/profile.ts ${runs}\` on ${new Date().toISOString()} (${navigator.hardwareConcurrency} cores, load ${sh(["cat", "/proc/loadavg"]).stdout.trim().split(" ").slice(0, 3).join(" ")}). Medians of ${runs} runs, ms. Each pod: loopback ADD, bridge ADD (bridge execs host-local), portmap ADD, host-local ADD + DEL on its own, then the DELs; a keeper pod keeps the bridge in place.`, "")
  out.push("## 1. One invocation, phase by phase (instrumented build of the same plugin)", "")
  out.push("`start` = spawn → first line of the entry (exec, Bun runtime start, loading the bundle); `import` = loading the plugin's module graph (Effect, skel, backend…); `work` = decoding, the steps, the output (includes any child process); `exit` = from the plugin's exit handler to the parent seeing it. CPU = user + system of the process and its children.", "")
  const keys = ["loopback ADD", "bridge ADD", "portmap ADD", "host-local ADD", "host-local DEL", "portmap DEL", "bridge DEL", "loopback DEL"]
  out.push(table(
    ["invocation", "start", "import", "work", "exit", "tscni total", "tscni CPU", "reference total", "reference CPU"],
    keys.map((key) => {
      const s = p.samples[`tscni probe ${key}`]
      const ref = p.samples[`reference plain ${key}`]
      return [
        key,
        fmt(med(s, (x) => x.marks?.main)),
        fmt(med(s, (x) => (x.marks ? x.marks.imported! - x.marks.main! : undefined))),
        fmt(med(s, (x) => (x.marks ? x.marks.exit! - x.marks.imported! : undefined))),
        fmt(med(s, (x) => (x.marks ? x.ms - x.marks.exit! : undefined))),
        fmt(med(s, (x) => x.ms)),
        fmt(med(s, (x) => x.cpuMs)),
        fmt(med(ref, (x) => x.ms)),
        fmt(med(ref, (x) => x.cpuMs))
      ]
    })
  ), "")
  out.push("## 2. The steps (TSCNI_LOG=debug, the real binaries; the log has whole milliseconds)", "")
  for (const key of ["bridge ADD", "bridge DEL", "portmap ADD", "portmap DEL", "loopback ADD", "loopback DEL"]) {
    const s = p.samples[`tscni debug ${key}`] ?? []
    const names = [...new Set(s.flatMap((x) => (x.steps ?? []).map(([name]) => name)))]
    const sumSteps = med(s, (x) => (x.steps ?? []).reduce((sum, [, ms]) => sum + ms, 0))
    const total = med(s, (x) => x.ms)
    const cells = names.map((name) => `${name} ${fmt(med(s, (x) => (x.steps ?? []).filter(([n]) => n === name).reduce((sum, [, ms]) => sum + ms, 0)))}`)
    out.push(`- **${key}**: total ${fmt(total)} ms; steps ${fmt(sumSteps)} ms (${cells.join(", ") || "none logged"}); outside the steps ${fmt(total !== undefined && sumSteps !== undefined ? total - sumSteps : undefined)} ms`)
  }
  out.push("")
  out.push("## 3. Bytecode on and off (loopback ADD, probe builds)", "")
  const bc = p.samples["tscni probe loopback ADD"]
  const nobc = p.samples["tscni nobytecode loopback ADD"]
  out.push(table(
    ["build", "start", "import", "work", "total"],
    [["--bytecode", bc], ["no bytecode", nobc]].map(([label, s]) => {
      const samples = s as Array<ProfileSample> | undefined
      return [
        label as string,
        fmt(med(samples, (x) => x.marks?.main)),
        fmt(med(samples, (x) => (x.marks ? x.marks.imported! - x.marks.main! : undefined))),
        fmt(med(samples, (x) => (x.marks ? x.marks.exit! - x.marks.imported! : undefined))),
        fmt(med(samples, (x) => x.ms))
      ]
    })
  ), "")
  out.push("## 4. System calls (strace -f -c, one invocation, the process and its children)", "")
  const count = (c: Record<string, number> | undefined, names: ReadonlyArray<string>) => (c ? names.reduce((sum, name) => sum + (c[name] ?? 0), 0) : undefined)
  out.push(table(
    ["invocation", "variant", "execve", "clone/clone3", "sendto+sendmsg", "recvfrom+recvmsg", "mmap+munmap", "futex", "all syscalls"],
    ["bridge ADD", "portmap ADD", "portmap DEL", "bridge DEL"].flatMap((key) =>
      ["tscni", "reference"].map((variant) => {
        const c = p.syscalls[`${variant} ${key}`]
        return [key, variant, ...[["execve"], ["clone", "clone3"], ["sendto", "sendmsg"], ["recvfrom", "recvmsg"], ["mmap", "munmap"], ["futex"], ["total"]].map((names) => String(count(c, names) ?? "–"))]
      })
    )
  ), "")
  out.push("## 5. Bundle sizes (`bun build --minify --target=bun --format=esm`)", "")
  out.push(table(
    ["plugin", "one bundle", "with --splitting: files (bytes)", "compiled binary", "binary − empty Bun binary"],
    bundles.map((b) => [
      b.plugin,
      `${fmt((b.single.reduce((sum, f) => sum + f.bytes, 0)) / 1024)} KiB`,
      b.split.map((f) => `${f.file} (${f.bytes})`).join(", "),
      `${fmt(b.binary / 1048576)} MiB`,
      `${fmt((b.binary - emptyBinary) / 1048576, 2)} MiB`
    ])
  ), "")
  if (p.failures.length > 0) out.push(`Failures: ${p.failures.map((f) => `${f.what} (exit ${f.exitCode}) ${f.output.replace(/\s+/g, " ").slice(0, 200)}`).join("; ")}`, "")
  return out.join("\n")
}

try {
  for (const name of ["loopback", "bridge", "portmap", "host-local"]) {
    if (!existsSync(join(DIST, name))) throw new Error(`${join(DIST, name)} is missing: run 'bun run build'`)
  }
  if (sh(["which", "strace"]).exitCode !== 0) throw new Error("strace is missing: apt-get install strace")
  log("building the instrumented plugins (with and without bytecode) and the bundles")
  const probes: Record<string, string> = {}
  const probesNoBytecode: Record<string, string> = {}
  for (const plugin of Object.keys(PLUGINS)) {
    probes[plugin] = buildProbe(plugin, true)
    probesNoBytecode[plugin] = buildProbe(plugin, false)
  }
  const emptyDir = join(work, "empty")
  mkdirSync(emptyDir)
  writeFileSync(join(emptyDir, "empty.ts"), "export {}\n")
  sh([process.execPath, "build", join(emptyDir, "empty.ts"), ...FLAGS, "--bytecode", "--outfile", join(emptyDir, "empty")])
  const bundles = bundleSizes()
  const variant = (id: "tscni" | "reference", n: number, binDir: string): Variant => {
    const dataDir = join(work, "state", id)
    mkdirSync(dataDir, { recursive: true })
    return { id, label: id, binDir, network: `bench-${id}`, bridge: `cni-bench${n}`, subnet: `10.21${n}.0.0/24`, dataDir }
  }
  log(`profiling: ${runs} pods × {tscni (probe, debug, no-bytecode passes), reference}`)
  const outcome = await runInHost<ProfileOutcome>(
    { chain: ["bridge", "portmap"], rounds: 1, timeBinary: "/usr/bin/time", baselines: {}, scratch: work },
    "profile",
    [variant("tscni", 1, DIST), variant("reference", 3, "/usr/lib/cni")],
    { tscni: runs, reference: runs, "tscni-keeper": 1, "reference-keeper": 1 },
    { profile: { probes, probesNoBytecode, runs } }
  )
  mkdirSync(OUT_DIR, { recursive: true })
  writeFileSync(join(OUT_DIR, "profile.json"), JSON.stringify(outcome, null, 1))
  writeFileSync(join(OUT_DIR, "profile.md"), render(outcome, bundles, statSync(join(emptyDir, "empty")).size))
  log(`done: ${join(OUT_DIR, "profile.md")}`)
} catch (error) {
  console.error(`profile: ${error instanceof Error ? error.stack ?? error.message : String(error)}`)
  process.exitCode = 1
} finally {
  cleanup()
}
