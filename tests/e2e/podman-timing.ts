/**
 * How long `podman run --rm IMAGE true` takes on a CNI network with our plugins
 * (dist/bin), with the multicall binary and `tscni daemon` serving the calls, and with the
 * reference plugins (/usr/lib/cni, Debian's containernetworking-plugins), plus the same
 * without a network (podman's own cost). They are run alternately, in a rotating order,
 * after a warm-up; medians reported.
 *
 *   bun tests/e2e/podman-timing.ts [--runs N] [--warmup N] [--json] [--no-write]
 *
 * stdout: a markdown table (or, with --json, the TimingReport as JSON); progress goes to
 * stderr; exit code 0 on success. Unless --no-write, the table also goes to
 * docs/e2e-timing.md. Needs root and tests/e2e/setup.sh.
 *
 * podman runs inside a network namespace made for the run (nsenter --net, so the mount
 * namespace and cgroups stay the host's): the bridges, nftables/iptables rules and
 * sysctls both plugin sets create land there, never on the real host, and go with it.
 * Both networks are the conflist `podman network create` writes (bridge → portmap →
 * firewall → tuning), each in its own network_config_dir.
 */
import { existsSync, mkdtempSync, readFileSync, rmSync, symlinkSync, writeFileSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { cleanupOwnRuns, cleanupStaleRuns } from "./cleanup.ts"
import {
  acquireLock,
  createNetwork,
  createPodman,
  IMAGE,
  networkConfigDir,
  OUR_PLUGINS,
  preflight,
  REFERENCE_PLUGINS,
  REPO,
  sh,
  type Podman
} from "./podman.ts"

export type VariantName = "tscni" | "resident" | "reference" | "none"

export interface VariantTiming {
  readonly variant: VariantName
  readonly label: string
  /** seconds, in run order */
  readonly samples: Array<number>
  readonly median: number
  readonly p10: number
  readonly p90: number
  readonly min: number
}

export interface TimingReport {
  readonly date: string
  readonly runs: number
  readonly warmup: number
  readonly versions: Record<string, string>
  readonly chain: Array<string>
  readonly variants: Array<VariantTiming>
  /** median of the per-round differences tscni − reference, seconds */
  readonly pairedDifference: number
  /** the same for tscni served by its daemon */
  readonly residentDifference: number
  /** /proc/loadavg (1 min) before and after: the runs share the machine */
  readonly load: { readonly before: number; readonly after: number }
  readonly notes: Array<string>
}

const quantile = (values: ReadonlyArray<number>, q: number): number => {
  const sorted = [...values].sort((a, b) => a - b)
  if (sorted.length === 0) return Number.NaN
  const position = (sorted.length - 1) * q
  const low = Math.floor(position)
  const high = Math.ceil(position)
  return sorted[low]! + (sorted[high]! - sorted[low]!) * (position - low)
}

const debVersion = (pkg: string): string => sh(["dpkg-query", "-W", "-f=${Version}", pkg]).stdout.trim() || "?"

const loadAverage = (): number => Number(readFileSync("/proc/loadavg", "utf8").split(" ")[0])

const progress = (message: string) => process.stderr.write(`[podman-timing] ${message}\n`)

export const podmanTiming = async (options: { runs?: number; warmup?: number } = {}): Promise<TimingReport> => {
  const runs = options.runs ?? 15
  const warmup = options.warmup ?? 2
  const release = await acquireLock()
  cleanupStaleRuns()
  const problems = preflight([OUR_PLUGINS, REFERENCE_PLUGINS], [], [])
  if (problems.length > 0) {
    release()
    throw new Error(`podman-timing preflight:\n  ${problems.join("\n  ")}`)
  }
  const loadBefore = loadAverage()
  // the runs are synchronous: a signal is seen between two runs, and ends the loop
  let interrupted: string | undefined
  const onSignal = (signal: string) => {
    interrupted = signal
  }
  process.once("SIGINT", onSignal)
  process.once("SIGTERM", onSignal)
  // the multicall binary under every plugin name, for the daemon variant
  const residentDir = mkdtempSync(join(tmpdir(), "tscni-e2e-timing-"))
  const socket = join(residentDir, "daemon.sock")
  for (const name of ["tscni", "bridge", "host-local", "portmap", "firewall", "tuning", "loopback", "bandwidth"]) {
    symlinkSync(join(OUR_PLUGINS, "tscni"), join(residentDir, name))
  }
  let daemon: ReturnType<typeof Bun.spawn> | undefined
  try {
    const podman: Podman = createPodman(
      [{ name: "tscni", pluginDir: OUR_PLUGINS }, { name: "reference", pluginDir: REFERENCE_PLUGINS }, { name: "resident", pluginDir: residentDir }],
      { netns: `tscni-e2e-timing-${process.pid}` }
    )
    const [oursConf, referenceConf, residentConf] = podman.state.confs as [string, string, string]
    const ours = createNetwork(podman, oursConf, { name: "tscni-e2e-t-ours", bridge: "tscni-e2e8", subnets: ["10.250.8.0/24"] })
    const reference = createNetwork(podman, referenceConf, { name: "tscni-e2e-t-ref", bridge: "tscni-e2e9", subnets: ["10.250.9.0/24"] })
    createNetwork(podman, residentConf, { name: "tscni-e2e-t-res", bridge: "tscni-e2e7", subnets: ["10.250.7.0/24"] })
    // the daemon runs where podman runs its plugins: the run's network namespace, the host's mounts
    daemon = Bun.spawn(["nsenter", `--net=/run/netns/${podman.state.netns}`, join(residentDir, "tscni"), "daemon", "--socket", socket, "--health-listen", "off"], { stdout: "ignore", stderr: "ignore" })
    for (let waited = 0; !existsSync(socket); waited += 20) {
      if (waited > 5000) throw new Error("tscni daemon did not start")
      await Bun.sleep(20)
    }
    const notes = [...ours.notes, ...reference.notes]
    // the same chain on both sides: what one side lacks, the other drops too
    const chain = (ours.conflist.plugins as Array<{ type: string }>).map((plugin) => plugin.type)
    const referenceChain = (reference.conflist.plugins as Array<{ type: string }>).map((plugin) => plugin.type)
    if (chain.join() !== referenceChain.join()) {
      const file = join(networkConfigDir(referenceConf), "tscni-e2e-t-ref.conflist")
      const conflist = JSON.parse(readFileSync(file, "utf8")) as { plugins: Array<{ type: string }> }
      conflist.plugins = conflist.plugins.filter((plugin) => chain.includes(plugin.type))
      writeFileSync(file, JSON.stringify(conflist, null, 3))
      notes.push(`reference chain cut to ${chain.join(" → ")} to match`)
    }

    const residentEnv = { TSCNI_DAEMON_SOCKET: socket }
    const variants: Array<{ variant: VariantName; label: string; conf: string; network: string; env?: Record<string, string> }> = [
      { variant: "tscni", label: "tscni (dist/bin)", conf: oursConf, network: "tscni-e2e-t-ours" },
      { variant: "resident", label: "tscni with `tscni daemon` (multicall links)", conf: residentConf, network: "tscni-e2e-t-res", env: residentEnv },
      { variant: "reference", label: `reference ${debVersion("containernetworking-plugins")} (/usr/lib/cni)`, conf: referenceConf, network: "tscni-e2e-t-ref" },
      { variant: "none", label: "no network (`--network none`)", conf: oursConf, network: "none" }
    ]
    const samples = new Map<VariantName, Array<number>>(variants.map((v) => [v.variant, []]))
    const once = async (v: (typeof variants)[number]): Promise<number> => {
      await Bun.sleep(0)
      if (interrupted) throw new Error(`interrupted by ${interrupted}`)
      const started = Bun.nanoseconds()
      const out = podman.run(v.conf, ["run", "--rm", "--network", v.network, IMAGE, "true"], v.env)
      const seconds = (Bun.nanoseconds() - started) / 1e9
      if (out.exitCode !== 0) throw new Error(`podman run --rm (${v.label}) exited ${out.exitCode}: ${out.stderr.trim()}`)
      return seconds
    }
    progress(`warm-up: ${warmup} round(s)`)
    for (let round = 0; round < warmup; round++) for (const v of variants) await once(v)
    for (let round = 0; round < runs; round++) {
      // rotate the order so no variant always runs first (or right after another)
      const order = variants.map((_, i) => variants[(i + round) % variants.length]!)
      for (const v of order) samples.get(v.variant)!.push(await once(v))
      progress(`round ${round + 1}/${runs}: ${variants.map((v) => `${v.variant} ${samples.get(v.variant)!.at(-1)!.toFixed(3)} s`).join(", ")}`)
    }
    // the daemon variant means something only if the daemon served it: one more run says so
    const log = join(residentDir, "plugins.log")
    podman.run(residentConf, ["run", "--rm", "--network", "tscni-e2e-t-res", IMAGE, "true"], { ...residentEnv, TSCNI_LOG: "debug", TSCNI_LOG_FILE: log })
    if (!existsSync(log) || !readFileSync(log, "utf8").includes("served by the tscni daemon")) throw new Error("the daemon variant was not served by tscni daemon")
    const tscni = samples.get("tscni")!
    const resident = samples.get("resident")!
    const ref = samples.get("reference")!
    return {
      date: new Date().toISOString(),
      runs,
      warmup,
      versions: {
        podman: debVersion("podman"),
        runc: debVersion("runc"),
        conmon: debVersion("conmon"),
        "containernetworking-plugins": debVersion("containernetworking-plugins"),
        bun: Bun.version,
        kernel: sh(["uname", "-r"]).stdout.trim(),
        cpus: String(navigator.hardwareConcurrency)
      },
      chain,
      variants: variants.map((v) => {
        const values = samples.get(v.variant)!
        return {
          variant: v.variant,
          label: v.label,
          samples: values,
          median: quantile(values, 0.5),
          p10: quantile(values, 0.1),
          p90: quantile(values, 0.9),
          min: Math.min(...values)
        }
      }),
      pairedDifference: quantile(tscni.map((value, i) => value - ref[i]!), 0.5),
      residentDifference: quantile(resident.map((value, i) => value - ref[i]!), 0.5),
      load: { before: loadBefore, after: loadAverage() },
      notes
    }
  } finally {
    if (daemon !== undefined) {
      daemon.kill("SIGTERM")
      await daemon.exited
    }
    // podman validates every flavour's plugin dir while it cleans up: remove ours after that
    const extra = cleanupOwnRuns()
    if (extra.length > 0) progress(`cleanup removed what podman's teardown left: ${extra.join("; ")}`)
    rmSync(residentDir, { recursive: true, force: true })
    release()
    process.off("SIGINT", onSignal)
    process.off("SIGTERM", onSignal)
  }
}

const seconds = (value: number) => `${value.toFixed(3)} s`

const medianOf = (report: TimingReport, variant: VariantName): number =>
  report.variants.find((v) => v.variant === variant)?.median ?? Number.NaN

export const markdownTable = (report: TimingReport): string => [
  "| plugins | runs | median | p10 | p90 | min |",
  "|---|---:|---:|---:|---:|---:|",
  ...report.variants.map((v) =>
    `| ${v.label} | ${v.samples.length} | ${seconds(v.median)} | ${seconds(v.p10)} | ${seconds(v.p90)} | ${seconds(v.min)} |`),
  "",
  `tscni − reference, median of the per-round differences: ${report.pairedDifference >= 0 ? "+" : ""}${seconds(report.pairedDifference)} per \`podman run --rm\`; ` +
    `with the daemon: ${report.residentDifference >= 0 ? "+" : ""}${seconds(report.residentDifference)}.`,
  `The network's share (median − no-network median): tscni ${seconds(medianOf(report, "tscni") - medianOf(report, "none"))}, ` +
    `with the daemon ${seconds(medianOf(report, "resident") - medianOf(report, "none"))}, ` +
    `reference ${seconds(medianOf(report, "reference") - medianOf(report, "none"))}.`
].join("\n")

export const markdownPage = (report: TimingReport): string => [
  "# podman run --rm: tscni vs the reference plugins",
  "",
  "Written by `bun tests/e2e/podman-timing.ts` (see `docs/e2e.md`); do not edit by hand.",
  "",
  `Wall time of \`podman run --rm ${IMAGE} true\` on a CNI network that \`podman network create\``,
  `made (${report.chain.join(" → ")}, host-local IPAM), with our plugins (one process per call,`,
  "and served by `tscni daemon`), with Debian's reference plugins, and without a network for",
  "podman's own cost. The variants run in turn,",
  `in a rotating order, ${report.runs} rounds after ${report.warmup} warm-up round(s). podman runs in a`,
  "network namespace of its own, so neither plugin set touches the real host.",
  "",
  markdownTable(report),
  "",
  `${report.date.slice(0, 16).replace("T", " ")} UTC; ${Object.entries(report.versions).map(([k, v]) => `${k} ${v}`).join(", ")}; ` +
    `load average ${report.load.before} before, ${report.load.after} after (other work shares the machine).`,
  ...(report.notes.length > 0 ? ["", `Notes: ${report.notes.join("; ")}.`] : []),
  ""
].join("\n")

if (import.meta.main) {
  const arg = (name: string): number | undefined => {
    const i = process.argv.indexOf(name)
    return i >= 0 ? Number(process.argv[i + 1]) : undefined
  }
  const runs = arg("--runs")
  const warmup = arg("--warmup")
  try {
    const report = await podmanTiming({ ...(runs !== undefined ? { runs } : {}), ...(warmup !== undefined ? { warmup } : {}) })
    if (!process.argv.includes("--no-write")) writeFileSync(join(REPO, "docs", "e2e-timing.md"), markdownPage(report))
    console.log(process.argv.includes("--json") ? JSON.stringify(report, null, 1) : markdownTable(report))
  } catch (error) {
    const message = error instanceof Error ? error.message : String(error)
    console.error(message)
    process.exit(message.startsWith("interrupted") ? 130 : 1)
  }
}
