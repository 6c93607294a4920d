/**
 * `bun run bench:scale` (tests/bench/scale.ts): the busy-node benchmark of issue #11.
 *
 * The chain bridge (isGateway, ipMasq, hairpinMode, host-local) → portmap (one hostPort per
 * pod), each plugin spawned as a runtime spawns it (env + stdin, prevResult passed along),
 * three ways in one run, alternating on every iteration:
 *
 * - **process**: tscni's multicall binary through its links (bridge, portmap, host-local),
 *   TSCNI_DAEMON_SOCKET naming a path where nothing listens: one process per call;
 * - **agent**: the same links, TSCNI_DAEMON_SOCKET naming a running `tscni agent` started
 *   inside the bench's host namespace: every call is forwarded and served warm;
 * - **reference**: /usr/lib/cni/bridge and portmap (+ host-local), Debian's 1.1.1.
 *
 * Node states: 0, 100 and 250 background pods per variant (each with its hostPort), each
 * without and with 5,000 foreign nft rules (a kube-proxy-like table of its own) plus 5,000
 * foreign iptables-nft rules in `nat` (KUBE-SVC-like chains). Per state, ADD then DEL of a
 * probe pod, each variant in turn. Then bursts of 100 concurrent pod ADDs and 100 DELs; the
 * agent's RSS and CPU; the forwarding process's peak RSS. Writes docs/bench/scale.md,
 * scale.json and scale.svg (scale-report.ts).
 *
 *   bun run bench:scale              full run (about 6 minutes of measuring on 2 cores)
 *   bun run bench:scale --quick      5 iterations per state, bursts on the empty node only (about 3.5 minutes)
 *   options: --wait-idle, --iterations N, --states 0,100,250, --burst N, --busy-reference-burst
 *   (the reference's burst on the busy node: ~11 minutes by itself, so only on request)
 *
 * Everything happens in network namespaces named tscni-bench-<pid>-* (host.ts), removed on
 * every path; the agent and the inner process are this run's children, killed on every
 * path. The real host's network is never touched; no traffic is sent.
 */
import { chmodSync, copyFileSync, existsSync, mkdirSync, readdirSync, readFileSync, statSync, symlinkSync, writeFileSync } from "node:fs"
// each binary measured as tscni-install leaves it: fsynced, dropped from the page cache
import { settleWrittenFile } from "@tscni/install/pageCache"
import { join, resolve } from "node:path"
import { cleanup, createNetns, deleteNetns, setUp, sh } from "./host.ts"
import { cniEnv, containerId, type Exec, execAsync, execTimed, type Json, parseJson, PLUGIN_PATH, type Pod, pluginStdin, rotate } from "./lib.ts"
import { add, type AgentSnapshot, type BurstAt, type BurstRun, type CycleSample, type ScaleResults, type StateResult, type StepTrace, VARIANT_IDS, type VariantId, del, writeScaleReport } from "./scale-report.ts"

const REPO = resolve(import.meta.dir, "..", "..")
const DIST = join(REPO, "dist", "bin")
const REFERENCE = "/usr/lib/cni"
const TIME = "/usr/bin/time"
const OUT_DIR = join(REPO, "docs", "bench")
/** foreign rules: a kube-proxy-like nftables table, and KUBE-SVC-like chains in iptables-nft's nat */
export const FOREIGN_NFT_RULES = 5000
export const FOREIGN_IPT_RULES = 5000
/** chains a freshly started agent serves on the empty node before the node states are measured */
const AGENT_WARMUP = 50
/** background pods are made (untimed) this many at a time per variant */
const GROW_PARALLEL = 4

interface ScaleVariant {
  readonly id: VariantId
  readonly binDir: string
  readonly network: string
  readonly bridge: string
  readonly subnet: string
  readonly dataDir: string
  /** hostPorts of this variant's pods start here (background i: base + i; probe base + 1999; bursts base + 1000 + …) */
  readonly portBase: number
  /** extra environment of every call: TSCNI_DAEMON_SOCKET, TSCNI_LOCK_DIR for tscni */
  readonly env: Record<string, string>
}

interface ScalePod extends Pod {
  readonly hostPort: number
}

interface Config {
  readonly states: ReadonlyArray<number>
  readonly iterations: number
  readonly warmup: number
  readonly burstPods: number
  /** who bursts where: "empty" (0 pods, no foreign rules, before growing), "busy" (the last state, with the foreign rules) */
  readonly bursts: Record<BurstAt, ReadonlyArray<VariantId>>
}

interface Plan {
  readonly scratch: string
  readonly bin: string
  readonly config: Config
  readonly variants: ReadonlyArray<ScaleVariant>
  readonly agent: { readonly pid: number; readonly socket: string }
  readonly clockTick: number
  /** compiled Bun programs as floors for the forwarding process's RSS: `empty` (export {}), `bare` (prints its stdin) */
  readonly baselines: Record<string, string>
  readonly pods: {
    readonly background: Record<VariantId, ReadonlyArray<ScalePod>>
    readonly probe: Record<VariantId, ScalePod>
    /** `${at}-${variant}` → pods */
    readonly burst: Record<string, ReadonlyArray<ScalePod>>
  }
}

const started = Bun.nanoseconds()
/** the run's start (wall clock), handed to the inner half so both log on one clock */
const origin = Number(process.env.TSCNI_SCALE_ORIGIN ?? Date.now())
const log = (message: string) => console.log(`[scale ${((Date.now() - origin) / 1000).toFixed(0).padStart(4)}s] ${message}`)

// ---------------------------------------------------------------- foreign rules

/** A kube-proxy-nftables-like table: a service chain per service (one DNAT each), one dispatch rule per service. */
export const foreignNftScript = (rules: number): string => {
  const services = Math.floor(rules / 2)
  const ip = (base: string, i: number) => `${base}.${Math.floor(i / 250)}.${(i % 250) + 1}`
  const lines = ["table ip kube-proxy {"]
  for (let i = 0; i < services; i++) lines.push(`  chain service-${i} { meta l4proto tcp dnat to ${ip("10.250", i)}:8080; }`)
  lines.push("  chain services {")
  for (let i = 0; i < rules - services; i++) lines.push(`    ip daddr ${ip("172.30", i)} tcp dport 80 jump service-${i % services}`)
  lines.push("  }")
  lines.push("  chain nat-prerouting { type nat hook prerouting priority dstnat; policy accept; jump services; }")
  lines.push("  chain nat-output { type nat hook output priority -100; policy accept; jump services; }")
  lines.push("}")
  return lines.join("\n") + "\n"
}

const svcChain = (i: number) => `KUBE-SVC-${new Bun.CryptoHasher("sha256").update(`svc-${i}`).digest("hex").slice(0, 16).toUpperCase()}`

/** KUBE-SVC-like chains in iptables-nft's nat table: one DNAT rule in each, one KUBE-SERVICES rule per chain. */
export const foreignIptablesScript = (rules: number, remove: boolean): string => {
  const services = Math.floor(rules / 2)
  const ip = (base: string, i: number) => `${base}.${Math.floor(i / 250)}.${(i % 250) + 1}`
  const portal = '-m comment --comment "kubernetes service portals" -j KUBE-SERVICES'
  const lines = ["*nat", ":KUBE-SERVICES - [0:0]"]
  for (let i = 0; i < services; i++) lines.push(`:${svcChain(i)} - [0:0]`)
  if (remove) {
    // with --noflush, declaring a user chain flushes it; then the jumps and the chains go
    lines.push(`-D PREROUTING ${portal}`, `-D OUTPUT ${portal}`, "-X KUBE-SERVICES")
    for (let i = 0; i < services; i++) lines.push(`-X ${svcChain(i)}`)
  } else {
    lines.push(`-A PREROUTING ${portal}`, `-A OUTPUT ${portal}`)
    for (let i = 0; i < rules - services; i++) {
      lines.push(`-A KUBE-SERVICES -d ${ip("172.31", i)}/32 -p tcp -m comment --comment "bench/svc-${i}:http cluster IP" -m tcp --dport 80 -j ${svcChain(i % services)}`)
    }
    for (let i = 0; i < services; i++) lines.push(`-A ${svcChain(i)} -p tcp -m comment --comment "bench/svc-${i}:http" -m tcp -j DNAT --to-destination ${ip("10.251", i)}:8080`)
  }
  lines.push("COMMIT")
  return lines.join("\n") + "\n"
}

// ---------------------------------------------------------------- the outer half (root namespace)

const parseArgs = () => {
  const argv = process.argv.slice(2)
  const value = (flag: string): string | undefined => {
    const i = argv.indexOf(flag)
    return i >= 0 ? argv[i + 1] : undefined
  }
  const quick = argv.includes("--quick")
  const states = value("--states")?.split(",").map(Number) ?? [0, 100, 250]
  if (states.some((n) => !Number.isInteger(n) || n < 0 || n > 999)) throw new Error("--states: pod counts 0–999, comma-separated")
  const config: Config = {
    states: [...states].sort((a, b) => a - b),
    iterations: Number(value("--iterations") ?? (quick ? 5 : 15)),
    warmup: 1,
    burstPods: Number(value("--burst") ?? 100),
    // the reference's burst on the busy node takes ~11 minutes here (iptables-nft with 5,000 foreign rules): only on request
    bursts: {
      empty: quick ? ["agent", "reference"] : ["agent", "reference", "process"],
      busy: [...(quick ? [] : ["agent", "process"] as const), ...(argv.includes("--busy-reference-burst") ? (quick ? ["agent", "reference"] as const : ["reference"] as const) : [])]
    }
  }
  return { quick, waitIdle: argv.includes("--wait-idle"), config }
}

const waitForIdle = async (wait: boolean) => {
  const load = () => Number(readFileSync("/proc/loadavg", "utf8").split(" ")[0])
  const cores = navigator.hardwareConcurrency
  if (wait) {
    const deadline = Date.now() + 600_000
    while (load() >= cores && Date.now() < deadline) {
      log(`load ${load()} ≥ ${cores} cores: waiting for the machine to calm down (--wait-idle)`)
      await Bun.sleep(15_000)
    }
  }
  if (load() >= cores) log(`warning: load average ${load()} on ${cores} cores: wall times will be noisy (CPU times are not)`)
}

const machine = () => ({
  date: new Date().toISOString(),
  cpus: navigator.hardwareConcurrency,
  cpuModel: /model name\s*:\s*(.*)/.exec(readFileSync("/proc/cpuinfo", "utf8"))?.[1] ?? "unknown",
  kernel: sh(["uname", "-r"]).stdout.trim(),
  bun: Bun.version,
  reference: sh(["dpkg-query", "-W", "-f", "${Version}", "containernetworking-plugins"]).stdout.trim() || "unknown",
  iptables: sh(["iptables", "-V"]).stdout.trim(),
  nft: sh(["nft", "-v"]).stdout.trim(),
  load: readFileSync("/proc/loadavg", "utf8").trim()
})

/** Processes this run started (the inner half, the agent): killed on every path, before the namespaces go. */
const mine = new Set<number>()
const killMine = () => {
  for (const pid of mine) {
    try {
      process.kill(pid, "SIGKILL")
    } catch {
      // gone already
    }
  }
  mine.clear()
}

/** The floors of any compiled Bun program, built exactly like tscni (as run.ts builds them). */
const BASELINES: Record<string, string> = { empty: "export {}\n", bare: "await Bun.write(Bun.stdout, await Bun.stdin.text())\n" }
const buildBaseline = (scratch: string, name: string, source: string): string => {
  const dir = join(scratch, "baseline")
  mkdirSync(dir, { recursive: true })
  writeFileSync(join(dir, `${name}.ts`), source)
  const out = join(dir, name)
  const flags = ["--compile", "--minify", "--bytecode", "--format=esm", "--no-compile-autoload-dotenv", "--no-compile-autoload-bunfig"]
  const built = sh([process.execPath, "build", join(dir, `${name}.ts`), ...flags, "--outfile", out])
  if (built.exitCode !== 0 || !existsSync(out)) throw new Error(`building the ${name} Bun program: ${built.stderr}`)
  // measured in the same state as tscni's binary
  if (!settleWrittenFile(out)) throw new Error(`${out}: posix_fadvise(DONTNEED) was refused`)
  return out
}

const outer = async () => {
  const { quick, waitIdle, config } = parseArgs()
  const need = (path: string, hint: string) => {
    if (!existsSync(path)) throw new Error(`${path} is missing: ${hint}`)
  }
  need(join(DIST, "tscni"), "run 'bun run build' first (or: cd packages/multicall && bun run build)")
  for (const name of ["bridge", "portmap", "host-local"]) need(join(REFERENCE, name), "apt-get install containernetworking-plugins")
  need(TIME, "apt-get install time")
  for (const tool of ["nft", "iptables-restore", "iptables-save"]) if (sh(["which", tool]).exitCode !== 0) throw new Error(`${tool} is missing (apt-get install nftables iptables)`)

  // this run's processes go first, then setUp's handlers (registered right after, so they run
  // after these) remove the namespaces and exit
  for (const signal of ["SIGINT", "SIGTERM", "SIGHUP"] as const) process.once(signal, killMine)
  process.once("exit", killMine)
  const scratch = setUp(log)
  await waitForIdle(waitIdle)
  const waitedS = (Bun.nanoseconds() - started) / 1e9
  const before = machine()
  // a copy of the multicall binary: a rebuild by someone else during the run changes nothing
  const bin = join(scratch, "bin")
  mkdirSync(bin)
  const builtAt = statSync(join(DIST, "tscni")).mtime.toISOString()
  copyFileSync(join(DIST, "tscni"), join(bin, "tscni"))
  chmodSync(join(bin, "tscni"), 0o755)
  if (!settleWrittenFile(join(bin, "tscni"))) throw new Error("the copied tscni: posix_fadvise(DONTNEED) was refused")
  for (const name of ["bridge", "portmap", "host-local"]) symlinkSync("tscni", join(bin, name))
  const lockDir = join(scratch, "lock")
  mkdirSync(lockDir)
  const socket = join(scratch, "agent.sock")
  const tscniEnv = (sock: string) => ({ TSCNI_DAEMON_SOCKET: sock, TSCNI_LOCK_DIR: lockDir })
  const variants: Array<ScaleVariant> = VARIANT_IDS.map((id, k) => {
    const dataDir = join(scratch, `data-${id}`)
    mkdirSync(dataDir)
    return {
      id,
      binDir: id === "reference" ? REFERENCE : bin,
      network: `scale-${id}`,
      bridge: `scale-${id.slice(0, 4)}`,
      subnet: `10.${151 + k}.0.0/16`,
      dataDir,
      portBase: 20000 + k * 3000,
      env: id === "reference" ? {} : tscniEnv(id === "agent" ? socket : join(scratch, "nothing-listens-here.sock"))
    }
  })

  log(`${quick ? "quick" : "full"} run: states ${config.states.join(", ")} pods per variant, ×{no foreign rules, ${FOREIGN_NFT_RULES} nft + ${FOREIGN_IPT_RULES} iptables-nft foreign rules}; ${config.iterations} iterations per state; bursts of ${config.burstPods}: ${(["empty", "busy"] as const).map((at) => `${at} node: ${config.bursts[at].join(", ") || "none"}`).join("; ")}`)
  log(`binary: ${DIST}/tscni built ${builtAt}, copied to the scratch dir`)
  const host = createNetns("scale-host")
  sh(["ip", "-n", host, "link", "set", "lo", "up"])
  const maxPods = Math.max(...config.states)
  const podsIn = (tag: string, count: number, portOf: (i: number) => number): Array<ScalePod> =>
    Array.from({ length: count }, (_, index) => ({ id: containerId(), netns: `/var/run/netns/${createNetns(`${tag}-${index}`)}`, index, hostPort: portOf(index) }))
  const t0 = Bun.nanoseconds()
  const background = Object.fromEntries(variants.map((v) => [v.id, podsIn(`bg-${v.id}`, maxPods, (i) => v.portBase + i)])) as Record<VariantId, Array<ScalePod>>
  const probe = Object.fromEntries(variants.map((v) => [v.id, podsIn(`probe-${v.id}`, 1, () => v.portBase + 1999)[0]!])) as Record<VariantId, ScalePod>
  const burst: Record<string, Array<ScalePod>> = {}
  ;(["empty", "busy"] as const).forEach((at, a) => {
    for (const v of variants.filter((x) => config.bursts[at].includes(x.id))) {
      burst[`${at}-${v.id}`] = podsIn(`burst-${at}-${v.id}`, config.burstPods, (i) => v.portBase + 1000 + a * 400 + i)
    }
  })
  const podCount = Object.values(background).flat().length + variants.length + Object.values(burst).flat().length
  log(`created the host namespace and ${podCount} pod namespaces in ${((Bun.nanoseconds() - t0) / 1e9).toFixed(1)} s`)

  // the agent, inside the host namespace (ip netns exec execs it: the pid is the agent's)
  const agentLog = join(scratch, "agent.log")
  const agent = Bun.spawn(["ip", "netns", "exec", host, join(bin, "tscni"), "agent", "--socket", socket, "--health-listen", "off"], {
    env: { PATH: PLUGIN_PATH, TSCNI_LOCK_DIR: lockDir },
    stdin: "ignore",
    stdout: "ignore",
    stderr: Bun.file(agentLog)
  })
  mine.add(agent.pid)
  for (let waited = 0; !existsSync(socket); waited += 20) {
    if (waited > 10_000 || agent.exitCode !== null) throw new Error(`the agent did not start: ${existsSync(agentLog) ? readFileSync(agentLog, "utf8") : ""}`)
    await Bun.sleep(20)
  }
  log(`tscni agent pid ${agent.pid} serving on ${socket} inside ${host}`)

  const baselines = Object.fromEntries(Object.entries(BASELINES).map(([name, source]) => [name, buildBaseline(scratch, name, source)]))
  const plan: Plan = {
    scratch,
    bin,
    config,
    variants,
    agent: { pid: agent.pid, socket },
    clockTick: Number(sh(["getconf", "CLK_TCK"]).stdout.trim() || 100),
    baselines,
    pods: { background, probe, burst }
  }
  const planPath = join(scratch, "plan.json")
  const outPath = join(scratch, "out.json")
  writeFileSync(planPath, JSON.stringify(plan))
  try {
    const inner = Bun.spawn(["ip", "netns", "exec", host, process.execPath, import.meta.path, "--inner", planPath, outPath], {
      env: { ...process.env, TSCNI_SCALE_ORIGIN: String(origin) },
      stdout: "inherit",
      stderr: "inherit"
    })
    mine.add(inner.pid)
    const exitCode = await inner.exited
    mine.delete(inner.pid)
    if (exitCode !== 0) throw new Error(`the inner half failed (exit ${exitCode})`)
  } finally {
    agent.kill("SIGTERM")
    const stopped = await Promise.race([agent.exited.then(() => true), Bun.sleep(5000).then(() => false)])
    if (!stopped) agent.kill("SIGKILL")
    mine.delete(agent.pid)
    log("removing the bench namespaces")
    const t1 = Bun.nanoseconds()
    for (const pod of [...Object.values(background).flat(), ...Object.values(probe), ...Object.values(burst).flat()]) deleteNetns(pod.netns.slice("/var/run/netns/".length))
    deleteNetns(host)
    log(`removed in ${((Bun.nanoseconds() - t1) / 1e9).toFixed(1)} s`)
  }
  const inner = JSON.parse(readFileSync(outPath, "utf8")) as Omit<ScaleResults, "machine" | "loadAfter" | "quick" | "builtAt" | "durationS" | "waitedS" | "agentLog" | "command">
  const results: ScaleResults = {
    ...inner,
    command: `bun run bench:scale${process.argv.slice(2).length > 0 ? ` ${process.argv.slice(2).join(" ")}` : ""}`,
    machine: before,
    loadAfter: readFileSync("/proc/loadavg", "utf8").trim(),
    quick,
    builtAt,
    agentLog: readFileSync(agentLog, "utf8").trim().split("\n").slice(0, 20),
    durationS: (Bun.nanoseconds() - started) / 1e9,
    waitedS
  }
  writeScaleReport(results, OUT_DIR)
  log(`done in ${results.durationS.toFixed(0)} s: ${join(OUT_DIR, "scale.md")}, scale.json, scale.svg`)
}

// ---------------------------------------------------------------- the inner half (inside the host namespace)

const inner = async (plan: Plan, outPath: string) => {
  const { config } = plan
  const variantOf = Object.fromEntries(plan.variants.map((v) => [v.id, v])) as Record<VariantId, ScaleVariant>
  const failures: Array<string> = []
  const fail = (what: string, exec: Exec) => {
    const line = `${what}: exit ${exec.exitCode}: ${(exec.stdout + exec.stderr).replace(/\s+/g, " ").trim().slice(0, 300)}`
    failures.push(line)
    if (failures.length <= 20) log(`FAILED ${line}`)
  }

  const conflist = (v: ScaleVariant): Json => ({
    cniVersion: "1.0.0",
    name: v.network,
    plugins: [
      {
        type: "bridge",
        bridge: v.bridge,
        isGateway: true,
        ipMasq: true,
        hairpinMode: true,
        ipam: { type: "host-local", ranges: [[{ subnet: v.subnet }]], routes: [{ dst: "0.0.0.0/0" }], dataDir: join(v.dataDir, "ipam") }
      },
      { type: "portmap", capabilities: { portMappings: true } }
    ]
  })
  const lists = Object.fromEntries(plan.variants.map((v) => [v.id, conflist(v)])) as Record<VariantId, Json>
  const args = (pod: ScalePod) => ({ portMappings: [{ hostPort: pod.hostPort, containerPort: 80, protocol: "tcp" }], bandwidth: {} })
  type Call = { argv: Array<string>; env: Record<string, string>; stdin: string }
  const call = (v: ScaleVariant, plugin: "bridge" | "portmap", command: "ADD" | "DEL", pod: ScalePod, prev: Json | undefined, extraEnv: Record<string, string> = {}): Call => {
    const list = lists[v.id]
    const conf = (list.plugins as Array<Json>)[plugin === "bridge" ? 0 : 1]!
    return {
      argv: [join(v.binDir, plugin)],
      env: { ...cniEnv(command, pod, "eth0", v.binDir), ...v.env, ...extraEnv },
      stdin: pluginStdin(list, conf, args(pod), prev)
    }
  }

  // ---- the agent, seen from /proc
  const agentPid = plan.agent.pid
  /** CPU of the agent: ns summed over its threads (schedstat), and utime + stime in ms (whole process, exited threads too) */
  const agentCpu = (): { schedMs: number; statMs: number } => {
    let ns = 0
    for (const task of readdirSync(`/proc/${agentPid}/task`)) {
      try {
        ns += Number(readFileSync(`/proc/${agentPid}/task/${task}/schedstat`, "utf8").split(" ")[0])
      } catch {
        // the thread ended
      }
    }
    const stat = readFileSync(`/proc/${agentPid}/stat`, "utf8")
    const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ")
    return { schedMs: ns / 1e6, statMs: ((Number(fields[11]) + Number(fields[12])) * 1000) / plan.clockTick }
  }
  const agentMemory = (): { rssMb: number; hwmMb: number; threads: number } => {
    const status = readFileSync(`/proc/${agentPid}/status`, "utf8")
    const kb = (key: string) => Number(new RegExp(`${key}:\\s+(\\d+)`).exec(status)?.[1] ?? Number.NaN)
    return { rssMb: kb("VmRSS") / 1024, hwmMb: kb("VmHWM") / 1024, threads: kb("Threads") }
  }
  /** Resets the agent's VmHWM to its current RSS (clear_refs 5): the next reading is the peak of the phase in between. */
  const resetPeak = () => writeFileSync(`/proc/${agentPid}/clear_refs`, "5")
  const snapshots: Array<AgentSnapshot> = []
  const snapshot = (when: string, pods: number, foreign: boolean) => {
    const s = { when, pods, foreign, ...agentMemory(), cpuMs: agentCpu().statMs }
    snapshots.push(s)
    resetPeak()
    log(`agent: ${when}: RSS ${s.rssMb.toFixed(1)} MB, peak since the previous reading ${s.hwmMb.toFixed(1)} MB, ${s.threads} threads, CPU so far ${(s.cpuMs / 1000).toFixed(1)} s`)
  }

  const rssOut = join(plan.scratch, "time.txt")
  /** One plugin exec, timed; for the agent variant also the agent's CPU over it; under /usr/bin/time its peak RSS. */
  const run = (v: ScaleVariant, c: Call, timeRss: boolean): { exec: Exec; agentMs: number; rssMb: number } => {
    const before = v.id === "agent" ? agentCpu().schedMs : 0
    const exec = execTimed(timeRss ? [TIME, "-f", "%M", "-o", rssOut, ...c.argv] : c.argv, c.env, c.stdin)
    const agentMs = v.id === "agent" ? agentCpu().schedMs - before : 0
    const rssMb = timeRss ? Number(readFileSync(rssOut, "utf8").trim().split("\n").at(-1)) / 1024 : Number.NaN
    return { exec, agentMs, rssMb }
  }

  const CALLS = ["bridgeAdd", "portmapAdd", "portmapDel", "bridgeDel"] as const
  /** ADD (bridge, portmap) then DEL (portmap, bridge) of one pod, each exec timed; stderr of each call in `stderr`. */
  const cycle = (v: ScaleVariant, pod: ScalePod, options: { env?: Record<string, string>; timeRss?: boolean } = {}): (CycleSample & { stderr: Array<string>; rssMb: CycleSample["ms"] }) | undefined => {
    const extraEnv = options.env ?? {}
    const timeRss = options.timeRss ?? false
    const bridgeAdd = run(v, call(v, "bridge", "ADD", pod, undefined, extraEnv), timeRss)
    if (bridgeAdd.exec.exitCode !== 0) {
      fail(`${v.id} bridge ADD ${pod.id.slice(0, 8)}`, bridgeAdd.exec)
      run(v, call(v, "bridge", "DEL", pod, undefined), false)
      return undefined
    }
    const bridged = parseJson(bridgeAdd.exec.stdout)
    const portmapAdd = run(v, call(v, "portmap", "ADD", pod, bridged, extraEnv), timeRss)
    if (portmapAdd.exec.exitCode !== 0) fail(`${v.id} portmap ADD ${pod.id.slice(0, 8)}`, portmapAdd.exec)
    const result = portmapAdd.exec.exitCode === 0 ? parseJson(portmapAdd.exec.stdout) : bridged
    const portmapDel = run(v, call(v, "portmap", "DEL", pod, result, extraEnv), timeRss)
    if (portmapDel.exec.exitCode !== 0) fail(`${v.id} portmap DEL ${pod.id.slice(0, 8)}`, portmapDel.exec)
    const bridgeDel = run(v, call(v, "bridge", "DEL", pod, result, extraEnv), timeRss)
    if (bridgeDel.exec.exitCode !== 0) fail(`${v.id} bridge DEL ${pod.id.slice(0, 8)}`, bridgeDel.exec)
    if (portmapAdd.exec.exitCode !== 0 || portmapDel.exec.exitCode !== 0 || bridgeDel.exec.exitCode !== 0) return undefined
    const execs = { bridgeAdd, portmapAdd, portmapDel, bridgeDel }
    const pick = (f: (x: { exec: Exec; agentMs: number; rssMb: number }) => number) => Object.fromEntries(CALLS.map((k) => [k, f(execs[k])])) as CycleSample["ms"]
    return {
      ms: pick((x) => x.exec.ms),
      cpuMs: pick((x) => x.exec.cpuMs),
      agentCpuMs: pick((x) => x.agentMs),
      rssMb: pick((x) => x.rssMb),
      stderr: CALLS.map((k) => execs[k].exec.stderr),
      ip: String((bridged?.ips as Array<Json> | undefined)?.[0]?.address ?? "")
    }
  }

  const fresh = (pod: ScalePod): ScalePod => ({ ...pod, id: containerId() })
  /** What a cycle keeps for the results (not its stderr and RSS readings). */
  const kept = (sample: CycleSample): CycleSample => ({ ms: sample.ms, cpuMs: sample.cpuMs, agentCpuMs: sample.agentCpuMs, ip: sample.ip })

  // ---- proof that the agent serves the agent variant's calls, and not the others'
  const verifications: Array<{ when: string; variant: VariantId; served: number; calls: number }> = []
  const verify = (when: string) => {
    for (const id of ["process", "agent"] as const) {
      const sample = cycle(variantOf[id], fresh(plan.pods.probe[id]), { env: { TSCNI_LOG: "debug" } })
      if (sample === undefined) throw new Error(`the ${id} variant's trial cycle failed`)
      const served = sample.stderr.filter((text) => text.includes("served by the tscni daemon")).length
      verifications.push({ when, variant: id, served, calls: 4 })
      log(`verify (${when}): ${id}: ${served} of 4 calls say "served by the tscni daemon"`)
      if (id === "agent" && served !== 4) throw new Error(`the agent did not serve the agent variant's calls:\n${sample.stderr.join("").slice(0, 2000)}`)
      if (id === "process" && served !== 0) throw new Error("a per-process call was served by the agent")
    }
  }

  /** One TSCNI_LOG=debug cycle per tscni variant: each call's wall time and its step trace (name phase, ms). */
  const traceSteps = (state: string): Array<StepTrace> => {
    const out: Array<StepTrace> = []
    for (const id of ["process", "agent"] as const) {
      const sample = cycle(variantOf[id], fresh(plan.pods.probe[id]), { env: { TSCNI_LOG: "debug" } })
      if (sample === undefined) continue
      out.push({
        state,
        variant: id,
        calls: CALLS.map((k, i) => ({
          call: k,
          ms: sample.ms[k],
          cpuMs: sample.cpuMs[k] + sample.agentCpuMs[k],
          steps: [...sample.stderr[i]!.matchAll(/step=(\S+) phase=(\S+) outcome=\S+ durationMs=(\d+(?:\.\d+)?)/g)].map((m) => [`${m[1]} ${m[2]}`, Number(m[3])] as [string, number])
        }))
      })
    }
    return out
  }

  // ---- background pods, untimed: the two tscni networks' through the agent (same code, same kernel state, faster)
  const chainAdd = async (v: ScaleVariant, pod: ScalePod): Promise<Json | undefined> => {
    const via = v.id === "reference" ? v : { ...v, env: { ...v.env, TSCNI_DAEMON_SOCKET: plan.agent.socket } }
    const b = call(via, "bridge", "ADD", pod, undefined)
    const bridged = await execAsync(b.argv, b.env, b.stdin)
    if (bridged.exitCode !== 0) return void fail(`${v.id} background bridge ADD ${pod.index}`, bridged)
    const p = call(via, "portmap", "ADD", pod, parseJson(bridged.stdout))
    const mapped = await execAsync(p.argv, p.env, p.stdin)
    if (mapped.exitCode !== 0) return void fail(`${v.id} background portmap ADD ${pod.index}`, mapped)
    return parseJson(mapped.stdout)
  }
  const grow = async (from: number, to: number) => {
    if (to <= from) return
    const t = Bun.nanoseconds()
    const perVariant: Array<string> = []
    for (const v of plan.variants) {
      const tv = Bun.nanoseconds()
      const todo = plan.pods.background[v.id].slice(from, to)
      let next = 0
      await Promise.all(Array.from({ length: GROW_PARALLEL }, async () => {
        while (next < todo.length) await chainAdd(v, todo[next++]!)
      }))
      perVariant.push(`${v.id} ${((Bun.nanoseconds() - tv) / 1e9).toFixed(1)} s`)
    }
    log(`background pods ${from} → ${to} per variant (${(to - from) * plan.variants.length} chain ADDs, ${GROW_PARALLEL} at a time, untimed) in ${((Bun.nanoseconds() - t) / 1e9).toFixed(1)} s (${perVariant.join(", ")})`)
  }

  // ---- foreign rules
  const foreignLoads: Array<{ what: string; ms: number }> = []
  const foreign = (remove: boolean) => {
    const nftFile = join(plan.scratch, "foreign.nft")
    const iptFile = join(plan.scratch, remove ? "foreign-remove.iptables" : "foreign.iptables")
    const t = Bun.nanoseconds()
    if (remove) {
      const out = sh(["nft", "delete", "table", "ip", "kube-proxy"])
      if (out.exitCode !== 0) throw new Error(`nft delete table: ${out.stderr}`)
    } else {
      writeFileSync(nftFile, foreignNftScript(FOREIGN_NFT_RULES))
      const out = sh(["nft", "-f", nftFile])
      if (out.exitCode !== 0) throw new Error(`nft -f ${nftFile}: ${out.stderr}`)
    }
    const nftMs = (Bun.nanoseconds() - t) / 1e6
    const t2 = Bun.nanoseconds()
    writeFileSync(iptFile, foreignIptablesScript(FOREIGN_IPT_RULES, remove))
    const out = sh(["iptables-restore", "--noflush", iptFile])
    if (out.exitCode !== 0) throw new Error(`iptables-restore --noflush ${iptFile}: ${out.stderr}`)
    const iptMs = (Bun.nanoseconds() - t2) / 1e6
    foreignLoads.push({ what: `${remove ? "remove" : "load"} nft`, ms: nftMs }, { what: `${remove ? "remove" : "load"} iptables`, ms: iptMs })
    const nftRules = remove ? 0 : (sh(["nft", "list", "table", "ip", "kube-proxy"]).stdout.match(/dnat to|jump service-/g) ?? []).length
    const iptRules = (sh(["iptables-save", "-t", "nat"]).stdout.match(/^-A KUBE-/gm) ?? []).length
    log(`foreign rules ${remove ? "removed" : "loaded"}: nft ${nftMs.toFixed(0)} ms, iptables-restore ${iptMs.toFixed(0)} ms; now ${nftRules} rules in table ip kube-proxy, ${iptRules} KUBE-* rules in iptables nat`)
    if (!remove && (nftRules !== FOREIGN_NFT_RULES || iptRules !== FOREIGN_IPT_RULES)) throw new Error(`foreign rules: expected ${FOREIGN_NFT_RULES} + ${FOREIGN_IPT_RULES}, found ${nftRules} + ${iptRules}`)
  }
  /** What the node holds besides the foreign rules (the bench's own pods' state). */
  const nodeCensus = () => ({
    links: (sh(["ip", "-o", "link", "show"]).stdout.match(/\n/g) ?? []).length,
    nftTables: sh(["nft", "list", "tables"]).stdout.trim().split("\n").filter((l) => l !== "").length,
    iptablesNatRules: (sh(["iptables-save", "-t", "nat"]).stdout.match(/^-A /gm) ?? []).length,
    iptablesNatChains: (sh(["iptables-save", "-t", "nat"]).stdout.match(/^:/gm) ?? []).length
  })

  /** Peak RSS of each call of one cycle under /usr/bin/time: for the agent variant, the forwarding process. */
  const peakRss = (id: "process" | "agent"): CycleSample["ms"] | undefined => cycle(variantOf[id], fresh(plan.pods.probe[id]), { timeRss: true })?.rssMb

  // ---- one node state: iterations × variants (rotating), ADD then DEL of the probe pod
  const measure = (pods: number, withForeign: boolean): StateResult => {
    const label = `${pods} pods${withForeign ? " + foreign rules" : ""}`
    log(`measuring: ${label}: ${config.iterations} iterations × {${VARIANT_IDS.join(", ")}} (+ ${config.warmup} warm-up)`)
    const samples: Record<VariantId, Array<CycleSample>> = { process: [], agent: [], reference: [] }
    resetPeak()
    const agentBefore = agentCpu()
    const t = Bun.nanoseconds()
    let agentCalls = 0
    for (let i = -config.warmup; i < config.iterations; i++) {
      for (const v of rotate(plan.variants, i + config.warmup)) {
        const sample = cycle(v, fresh(plan.pods.probe[v.id]))
        if (v.id === "agent") agentCalls += 4
        if (sample !== undefined && i >= 0) samples[v.id].push(kept(sample))
      }
    }
    const wallS = (Bun.nanoseconds() - t) / 1e9
    const agentAfter = agentCpu()
    const agentAfterMemory = agentMemory()
    const med = (id: VariantId, f: (s: CycleSample) => number) => {
      const xs = samples[id].map(f).sort((a, b) => a - b)
      return xs.length === 0 ? Number.NaN : xs[Math.floor(xs.length / 2)]!
    }
    log(`  ${label}: ADD / DEL ms (≈median): ${VARIANT_IDS.map((id) => `${id} ${med(id, add).toFixed(0)} / ${med(id, del).toFixed(0)}`).join(", ")} (${wallS.toFixed(0)} s)`)
    const forwardRss = peakRss("agent")
    const processRss = peakRss("process")
    const steps = traceSteps(label)
    return {
      pods,
      foreign: withForeign,
      samples,
      wallS,
      agent: { cpuMs: agentAfter.statMs - agentBefore.statMs, schedMs: agentAfter.schedMs - agentBefore.schedMs, calls: agentCalls, ...agentAfterMemory },
      forwardRssMb: forwardRss,
      processRssMb: processRss,
      census: nodeCensus(),
      steps,
      load: readFileSync("/proc/loadavg", "utf8").split(" ").slice(0, 3).join(" ")
    }
  }

  // ---- bursts: N pods' chain ADDs at once, wall until the last ends; then their DELs at once
  const bursts: Array<BurstRun> = []
  const burst = async (at: "empty" | "busy", pods: number, withForeign: boolean) => {
    for (const id of config.bursts[at]) {
      const v = variantOf[id]
      const group = plan.pods.burst[`${at}-${id}`]!
      resetPeak()
      const agentBefore = agentCpu()
      const cpuOf = (execs: ReadonlyArray<Exec | undefined>) => execs.reduce((sum, e) => sum + (e?.cpuMs ?? 0), 0)
      log(`burst (${at} node): ${group.length} × ${id} chain ADD at once`)
      let t = Bun.nanoseconds()
      const adds = await Promise.all(group.map(async (pod) => {
        const started = Bun.nanoseconds()
        const b = call(v, "bridge", "ADD", pod, undefined)
        const bridged = await execAsync(b.argv, b.env, b.stdin)
        if (bridged.exitCode !== 0) {
          fail(`${id} burst bridge ADD ${pod.index}`, bridged)
          return { bridged, mapped: undefined, result: undefined, chainMs: Number.NaN }
        }
        const p = call(v, "portmap", "ADD", pod, parseJson(bridged.stdout))
        const mapped = await execAsync(p.argv, p.env, p.stdin)
        if (mapped.exitCode !== 0) fail(`${id} burst portmap ADD ${pod.index}`, mapped)
        return { bridged, mapped, result: mapped.exitCode === 0 ? parseJson(mapped.stdout) : undefined, chainMs: (Bun.nanoseconds() - started) / 1e6 }
      }))
      const addWallMs = (Bun.nanoseconds() - t) / 1e6
      const agentMid = agentCpu()
      const ips = adds.map((a) => String((a.result?.ips as Array<Json> | undefined)?.[0]?.address ?? "")).filter((ip) => ip !== "")
      log(`  ${id}: ADD wall ${addWallMs.toFixed(0)} ms, ${adds.filter((a) => a.result !== undefined).length} succeeded, ${new Set(ips).size} distinct IPs; now ${group.length} × DEL at once`)
      t = Bun.nanoseconds()
      const dels = await Promise.all(group.map(async (pod, i) => {
        const started = Bun.nanoseconds()
        const prev = adds[i]!.result ?? (adds[i]!.bridged.exitCode === 0 ? parseJson(adds[i]!.bridged.stdout) : undefined)
        const p = call(v, "portmap", "DEL", pod, prev)
        const unmapped = await execAsync(p.argv, p.env, p.stdin)
        if (unmapped.exitCode !== 0) fail(`${id} burst portmap DEL ${pod.index}`, unmapped)
        const b = call(v, "bridge", "DEL", pod, prev)
        const unbridged = await execAsync(b.argv, b.env, b.stdin)
        if (unbridged.exitCode !== 0) fail(`${id} burst bridge DEL ${pod.index}`, unbridged)
        return { unmapped, unbridged, chainMs: (Bun.nanoseconds() - started) / 1e6 }
      }))
      const delWallMs = (Bun.nanoseconds() - t) / 1e6
      const agentAfter = agentCpu()
      log(`  ${id}: DEL wall ${delWallMs.toFixed(0)} ms, ${dels.filter((d) => d.unmapped.exitCode === 0 && d.unbridged.exitCode === 0).length} succeeded`)
      bursts.push({
        at,
        pods,
        foreign: withForeign,
        variant: id,
        n: group.length,
        addWallMs,
        delWallMs,
        addSucceeded: adds.filter((a) => a.result !== undefined).length,
        delSucceeded: dels.filter((d) => d.unmapped.exitCode === 0 && d.unbridged.exitCode === 0).length,
        distinctIps: new Set(ips).size,
        addCpuMs: cpuOf(adds.flatMap((a) => [a.bridged, a.mapped])) + (id === "agent" ? agentMid.statMs - agentBefore.statMs : 0),
        delCpuMs: cpuOf(dels.flatMap((d) => [d.unmapped, d.unbridged])) + (id === "agent" ? agentAfter.statMs - agentMid.statMs : 0),
        addChainMs: adds.map((a) => a.chainMs),
        delChainMs: dels.map((d) => d.chainMs),
        callCpuMs: [...adds.flatMap((a) => [a.bridged, a.mapped]), ...dels.flatMap((d) => [d.unmapped, d.unbridged])].map((e) => e?.cpuMs ?? Number.NaN),
        agentRssMb: agentMemory().rssMb,
        agentHwmMb: agentMemory().hwmMb
      })
    }
  }

  // ---- the run
  snapshot("start", 0, false)
  verify("start")
  // A freshly started agent's code is not compiled by the JIT yet (it serves its first chains
  // ~25 % slower, see the README): node states are measured on an agent that has served
  // AGENT_WARMUP chains on the empty node, as on a node whose agent has been up. What those
  // first chains cost is kept and reported on its own (the fresh agent row).
  log(`warming the agent: ${AGENT_WARMUP} chains on the empty node (the first ${config.iterations} reported as a fresh agent's)`)
  const freshAgent: Array<CycleSample> = []
  for (let i = 0; i < AGENT_WARMUP; i++) {
    const sample = cycle(variantOf.agent, fresh(plan.pods.probe.agent))
    if (sample !== undefined && freshAgent.length < config.iterations) freshAgent.push(kept(sample))
  }
  snapshot("after warming the agent", 0, false)
  const states: Array<StateResult> = []
  let current = 0
  const last = config.states[config.states.length - 1]!
  for (const n of config.states) {
    await grow(current, n)
    current = n
    snapshot(`${n} pods made`, n, false)
    for (const withForeign of [false, true]) {
      if (withForeign) foreign(false)
      const state = measure(n, withForeign)
      states.push(state)
      snapshot(`after measuring ${n} pods${withForeign ? " + foreign" : ""}`, n, withForeign)
      if (n === 0 && !withForeign && config.bursts.empty.length > 0) {
        await burst("empty", 0, false)
        snapshot("after the empty-node bursts", 0, false)
      }
      if (withForeign && (n !== last || config.bursts.busy.length === 0)) foreign(true)
    }
  }
  if (config.bursts.busy.length > 0) {
    await burst("busy", last, true)
    snapshot(`after the busy-node bursts (${last} pods + foreign)`, last, true)
  }
  verify("end")
  const baselineRssMb: Record<string, Array<number>> = {}
  for (const [name, path] of Object.entries(plan.baselines)) {
    for (let i = 0; i < 5; i++) {
      execTimed([TIME, "-f", "%M", "-o", rssOut, path], { PATH: PLUGIN_PATH }, '{"cniVersion":"1.0.0"}')
      ;(baselineRssMb[name] ??= []).push(Number(readFileSync(rssOut, "utf8").trim().split("\n").at(-1)) / 1024)
    }
  }
  log(`Bun floors, peak RSS: ${Object.entries(baselineRssMb).map(([name, mbs]) => `${name} ${Math.max(...mbs).toFixed(1)} MB`).join(", ")}`)
  writeFileSync(outPath, JSON.stringify({ config, foreignRules: { nft: FOREIGN_NFT_RULES, iptables: FOREIGN_IPT_RULES }, states, bursts, snapshots, verifications, foreignLoads, failures, agentPid, baselineRssMb, freshAgent, agentWarmup: AGENT_WARMUP }))
}

if (import.meta.main && process.argv[2] === "--inner") {
  await inner(JSON.parse(readFileSync(process.argv[3]!, "utf8")) as Plan, process.argv[4]!)
  process.exit(0)
} else if (import.meta.main) {
  try {
    await outer()
  } catch (error) {
    console.error(`bench:scale: ${error instanceof Error ? error.stack ?? error.message : String(error)}`)
    process.exitCode = 1
  } finally {
    killMine()
    cleanup()
  }
}
