/**
 * The benchmark suite: tscni against the reference plugins (containernetworking-plugins in
 * /usr/lib/cni) on the same conflists, in the same run, alternating. Run as root:
 *   bun run bench            (about 5 minutes on 2 cores)
 *   bun run bench --quick    (fewer iterations, about 1 minute)
 *   bun run bench --wait-idle  (first wait, up to 10 min, for the load to drop below the core count)
 * Writes docs/bench/results.md, results.svg and results.json. See docs/bench/README.md.
 *
 * Everything that touches the network happens in namespaces named tscni-bench-<pid>-*,
 * created here and removed on every path (normal end, error, SIGINT, SIGTERM). Plugins
 * that change "the host" run in one such namespace (inner.ts), never on the real host.
 */
import { chmodSync, copyFileSync, existsSync, lstatSync, mkdirSync, readdirSync, readFileSync, statSync, symlinkSync, unlinkSync, writeFileSync } from "node:fs"
import { join, resolve } from "node:path"
import { cleanup, runInHost as runPhase, setUp, sh } from "./host.ts"
import {
  type ChainOutcome,
  type ChainPlugin,
  type ConcurrentRun,
  execTimed,
  type MemoryOutcome,
  type Plan,
  type ProbeOutcome,
  rotate,
  type SerialOutcome,
  type Variant,
  type VariantId,
  versionEnv
} from "./lib.ts"
import { type BenchResults, type SizeRow, writeReport } from "./report.ts"

const ROOT = resolve(import.meta.dir, "..", "..")
const DIST = join(ROOT, "dist", "bin")
const REFERENCE = "/usr/lib/cni"
const OUT_DIR = join(ROOT, "docs", "bench")
const TIME = "/usr/bin/time"
/** The plugins a Kubernetes node needs (loopback for every pod, then the pod network chain). */
const NODE_SET = ["loopback", "bridge", "host-local", "portmap", "bandwidth", "tuning"] as const
const VERSION_PLUGINS = ["bridge", "host-local", "portmap", "loopback"] as const

const quick = process.argv.includes("--quick")
const config = quick
  ? { versionRuns: 15, serialPods: 10, chainPods: 10, concurrentRounds: 1, concurrentPods: 40, memoryPods: 1 }
  : { versionRuns: 60, serialPods: 50, chainPods: 50, concurrentRounds: 2, concurrentPods: 40, memoryPods: 3 }

const started = Bun.nanoseconds()
const log = (message: string) => console.log(`[bench ${((Bun.nanoseconds() - started) / 1e9).toFixed(0).padStart(4)}s] ${message}`)

// ---------------------------------------------------------------- the binaries under test

const need = (path: string, hint: string) => {
  if (!existsSync(path)) {
    console.error(`bench: ${path} is missing: ${hint}`)
    process.exit(1)
  }
}
for (const name of [...VERSION_PLUGINS, "tscni"]) need(join(DIST, name), "run 'bun run build' first (or build that package: see docs/bench/README.md)")
for (const name of NODE_SET) need(join(REFERENCE, name), "apt-get install containernetworking-plugins")
need(TIME, "apt-get install time")

const work = setUp(log)

/** Copies of dist/bin: another engineer's rebuild during the run must not change what is measured. */
const tscniDir = join(work, "bin-tscni")
const multicallDir = join(work, "bin-multicall")
mkdirSync(tscniDir)
mkdirSync(multicallDir)
const builtAt: Record<string, string> = {}
for (const name of [...NODE_SET, "tscni"]) {
  const from = join(DIST, name)
  if (!existsSync(from)) continue
  builtAt[name] = statSync(from).mtime.toISOString()
  copyFileSync(from, join(name === "tscni" ? multicallDir : tscniDir, name))
  chmodSync(join(name === "tscni" ? multicallDir : tscniDir, name), 0o755)
}

const answersVersion = (path: string): boolean => {
  const run = execTimed([path], versionEnv(), '{"cniVersion":"1.0.0"}')
  return run.exitCode === 0 && run.stdout.includes("supportedVersions")
}

/** The multicall binary is linked under every name it answers to; the rest are left out. */
const multicallPlugins: Array<string> = []
for (const name of NODE_SET) {
  const link = join(multicallDir, name)
  symlinkSync("tscni", link)
  if (answersVersion(link)) multicallPlugins.push(name)
  else unlinkSync(link)
}

/**
 * The floors, compiled exactly like our plugins: `bare` only copies stdin to stdout, the
 * cheapest way measured (Bun.stdin.text + Bun.write: ~5.7 ms with stdout a pipe, against
 * ~10.7 ms for readFileSync + process.stdout.write, whose Node stream alone costs ~5–10 ms;
 * see the README), `empty` does nothing at all (the cost of starting the Bun runtime).
 */
const buildBaseline = (name: string, source: string): string => {
  const dir = join(work, "baseline")
  mkdirSync(dir, { recursive: true })
  writeFileSync(join(dir, `${name}.ts`), source)
  const out = join(dir, name)
  const build = Bun.spawnSync([
    process.execPath, "build", join(dir, `${name}.ts`), "--compile", "--minify", "--bytecode", "--format=esm",
    "--no-compile-autoload-dotenv", "--no-compile-autoload-bunfig", "--outfile", out
  ], { cwd: dir, stdout: "pipe", stderr: "pipe" })
  if (build.exitCode !== 0 || !existsSync(out)) throw new Error(`building the ${name} Bun program failed: ${build.stderr.toString()}`)
  return out
}
const bare = buildBaseline("bare", "await Bun.write(Bun.stdout, await Bun.stdin.text())\n")
const empty = buildBaseline("empty", "export {}\n")

const variant = (id: VariantId, phase: string): Variant => {
  const base = { tscni: { binDir: tscniDir, n: 1, label: "tscni" }, multicall: { binDir: multicallDir, n: 2, label: "tscni multicall" }, reference: { binDir: REFERENCE, n: 3, label: "reference" } }[id]
  const dataDir = join(work, phase, id)
  mkdirSync(dataDir, { recursive: true })
  return {
    id,
    label: base.label,
    binDir: base.binDir,
    network: `bench-${id}`,
    bridge: `cni-bench${base.n}`,
    subnet: `10.21${base.n}.0.0/24`,
    dataDir
  }
}

// ---------------------------------------------------------------- phases

/** VERSION: process start to exit; every variant of one plugin in turn, order rotating. */
const versionPhase = (): BenchResults["version"] => {
  const out: BenchResults["version"] = {}
  const stdin = '{"cniVersion":"1.0.0"}'
  for (const plugin of VERSION_PLUGINS) {
    const candidates: Array<[string, string]> = [
      ["tscni", join(tscniDir, plugin)],
      ["reference", join(REFERENCE, plugin)],
      ["bare", bare],
      ["empty", empty]
    ]
    if (multicallPlugins.includes(plugin)) candidates.splice(1, 0, ["multicall", join(multicallDir, plugin)])
    const samples: Record<string, Array<number>> = Object.fromEntries(candidates.map(([id]) => [id, []]))
    const failures: Array<string> = []
    for (let i = -3; i < config.versionRuns; i++) {
      for (const [id, path] of rotate(candidates, i + 3)) {
        const run = execTimed([path], versionEnv(), stdin)
        if (run.exitCode !== 0) failures.push(`${id} ${plugin}: exit ${run.exitCode} ${run.stdout}${run.stderr}`.slice(0, 300))
        else if (i >= 0) samples[id]!.push(run.ms)
      }
    }
    out[plugin] = { samples, failures }
  }
  return out
}

const base = (): Omit<Plan, "phase" | "variants" | "pods"> => ({
  chain: ["bridge", "portmap"],
  rounds: 1,
  timeBinary: TIME,
  baselines: { bare, empty },
  scratch: work
})
const runInHost = <A>(phase: Plan["phase"], variants: ReadonlyArray<Variant>, podGroups: Record<string, number>, extra: Partial<Plan> = {}) =>
  runPhase<A>(base(), phase, variants, podGroups, extra)

/** bandwidth and tuning are in the chain when they are built, answer VERSION, and a whole chain ADD/CHECK/DEL works. */
const chooseChain = async (): Promise<{ chain: Array<ChainPlugin>; note: string }> => {
  const full: Array<ChainPlugin> = ["bridge", "portmap", "bandwidth", "tuning"]
  const missing = (["bandwidth", "tuning"] as const).filter((name) => !existsSync(join(tscniDir, name)) || !answersVersion(join(tscniDir, name)))
  if (missing.length > 0) {
    return { chain: ["bridge", "portmap"], note: `${missing.join(" and ")} ${missing.length > 1 ? "are" : "is"} not built (or do not answer VERSION) in dist/bin: the chain measured is bridge → portmap.` }
  }
  const probe = await runInHost<ProbeOutcome>("probe", [variant("tscni", "probe"), variant("reference", "probe")], { tscni: 1, reference: 1 }, { chain: full })
  if (!probe.ok) {
    return { chain: ["bridge", "portmap"], note: `the full chain failed a trial ADD/CHECK/DEL, so the chain measured is bridge → portmap:\n${probe.detail}` }
  }
  return { chain: full, note: "bandwidth and tuning were built and passed a trial ADD/CHECK/DEL: the full chain is measured." }
}

const fileSize = (path: string): number => (existsSync(path) ? statSync(path).size : 0)

const sizes = (): Array<SizeRow> => {
  const rows: Array<SizeRow> = []
  const present = NODE_SET.filter((name) => existsSync(join(DIST, name)))
  rows.push({
    what: `tscni, one binary per plugin (${present.join(", ")})`,
    bytes: present.reduce((sum, name) => sum + fileSize(join(DIST, name)), 0),
    files: present.length
  })
  rows.push({
    what: `tscni multicall: dist/bin/tscni + ${multicallPlugins.length} symlinks (${multicallPlugins.join(", ")})`,
    bytes: fileSize(join(DIST, "tscni")) + multicallPlugins.reduce((sum, name) => sum + lstatSync(join(multicallDir, name)).size, 0),
    files: 1 + multicallPlugins.length
  })
  rows.push({
    what: `reference, the same plugins (${present.join(", ")})`,
    bytes: present.reduce((sum, name) => sum + fileSize(join(REFERENCE, name)), 0),
    files: present.length
  })
  rows.push({
    what: `reference, all ${NODE_SET.length} plugins a Kubernetes node needs (${NODE_SET.join(", ")})`,
    bytes: NODE_SET.reduce((sum, name) => sum + fileSize(join(REFERENCE, name)), 0),
    files: NODE_SET.length
  })
  const all = readdirSync(REFERENCE)
  rows.push({ what: `reference, the whole Debian package (${all.length} plugins)`, bytes: all.reduce((sum, name) => sum + fileSize(join(REFERENCE, name)), 0), files: all.length })
  return rows
}

const machine = () => ({
  date: new Date().toISOString(),
  cpus: navigator.hardwareConcurrency,
  cpuModel: /model name\s*:\s*(.*)/.exec(readFileSync("/proc/cpuinfo", "utf8"))?.[1] ?? "unknown",
  kernel: sh(["uname", "-r"]).stdout.trim(),
  bun: Bun.version,
  reference: sh(["dpkg-query", "-W", "-f", "${Version}", "containernetworking-plugins"]).stdout.trim() || "unknown",
  load: readFileSync("/proc/loadavg", "utf8").trim()
})

// ---------------------------------------------------------------- main

/**
 * Other work on the machine inflates tscni's wall times more than the reference's (it
 * needs several times the CPU per invocation), so the ratios move with the load.
 * `--wait-idle` waits (up to 10 minutes) for the 1-minute load to drop below the core count.
 */
const waitForIdle = async () => {
  const load = () => Number(readFileSync("/proc/loadavg", "utf8").split(" ")[0])
  const cores = navigator.hardwareConcurrency
  if (process.argv.includes("--wait-idle")) {
    const deadline = Date.now() + 600_000
    while (load() >= cores && Date.now() < deadline) {
      log(`load ${load()} ≥ ${cores} cores: waiting for the machine to calm down (--wait-idle)`)
      await Bun.sleep(15_000)
    }
  }
  if (load() >= cores) log(`warning: load average ${load()} on ${cores} cores: wall times will be noisy (CPU times are not); see README`)
}

try {
  await waitForIdle()
  log(`${quick ? "quick" : "full"} run; binaries copied from ${DIST} (built ${Object.values(builtAt).sort().at(-1)}); multicall answers as: ${multicallPlugins.join(", ") || "nothing"}`)
  const before = machine()

  log(`VERSION: ${VERSION_PLUGINS.length} plugins × ${config.versionRuns} runs of each variant`)
  const version = versionPhase()

  log("choosing the chain (are bandwidth and tuning there and working?)")
  const { chain, note: chainNote } = await chooseChain()
  log(chainNote.split("\n")[0]!)

  const serialIds: Array<VariantId> = ["tscni", "reference"]
  if (["loopback", "bridge", "host-local"].every((name) => multicallPlugins.includes(name))) serialIds.push("multicall")
  log(`serial: ${config.serialPods} pods × {${serialIds.join(", ")}}: loopback + bridge (+ host-local) ADD, then DEL`)
  const serial = await runInHost<SerialOutcome>(
    "serial",
    serialIds.map((id) => variant(id, "serial")),
    Object.fromEntries(serialIds.map((id) => [id, config.serialPods]))
  )

  log(`chain: ${config.chainPods} pods × {tscni, reference}: ${chain.join(" → ")} ADD, then DEL`)
  const chainOutcome = await runInHost<ChainOutcome>(
    "chain",
    [variant("tscni", "chain"), variant("reference", "chain")],
    { tscni: config.chainPods, reference: config.chainPods },
    { chain }
  )

  log(`concurrent: ${config.concurrentRounds} round(s) × {tscni, reference}: ${config.concurrentPods} ADDs at once, then ${config.concurrentPods} DELs`)
  const concurrentGroups: Record<string, number> = {}
  for (let round = 0; round < config.concurrentRounds; round++) {
    concurrentGroups[`tscni-${round}`] = config.concurrentPods
    concurrentGroups[`reference-${round}`] = config.concurrentPods
  }
  const concurrent = await runInHost<Array<ConcurrentRun>>(
    "concurrent",
    [variant("tscni", "concurrent"), variant("reference", "concurrent")],
    concurrentGroups,
    { rounds: config.concurrentRounds }
  )

  const memoryIds: Array<VariantId> = ["tscni", "reference"]
  if (multicallPlugins.length > 0) memoryIds.push("multicall")
  log(`memory: ${config.memoryPods} pod(s) × {${memoryIds.join(", ")}} under ${TIME} -f %M`)
  const memory = await runInHost<MemoryOutcome>(
    "memory",
    memoryIds.map((id) => variant(id, "memory")),
    Object.fromEntries(memoryIds.map((id) => [id, config.memoryPods])),
    { chain }
  )

  const results: BenchResults = {
    machine: before,
    loadAfter: readFileSync("/proc/loadavg", "utf8").trim(),
    quick,
    config,
    builtAt,
    multicallPlugins,
    chain,
    chainNote,
    version,
    serial,
    chainOutcome,
    concurrent,
    memory,
    sizes: sizes(),
    durationS: (Bun.nanoseconds() - started) / 1e9
  }
  writeReport(results, OUT_DIR)
  log(`done in ${results.durationS.toFixed(0)} s: ${join(OUT_DIR, "results.md")}, results.svg, results.json`)
} catch (error) {
  console.error(`bench: ${error instanceof Error ? error.stack ?? error.message : String(error)}`)
  process.exitCode = 1
} finally {
  cleanup()
}
