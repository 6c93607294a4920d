/**
 * `bun tests/bench/resident.ts [pods]`: the resident tscni (`tscni daemon`, reached through
 * the multicall binary) against the same binary without a daemon and the reference plugins,
 * on the same conflists in one host namespace, alternating. Writes docs/bench/resident.md.
 *
 * Run as root after `bun run build`. Namespaces are the bench's (host.ts): removed on every
 * path; the daemon is this run's own child, stopped with SIGTERM. Traffic: none.
 */
import { copyFileSync, existsSync, readFileSync, symlinkSync, writeFileSync } from "node:fs"
import { join, resolve } from "node:path"
import { createNetns, deleteNetns, setUp, sh } from "./host.ts"
import { cniEnv, containerId, execAsync, type Exec, execTimed, median, percentile, type Pod } from "./lib.ts"

const REPO = resolve(import.meta.dir, "..", "..")
const REFERENCE = "/usr/lib/cni"
/** As in the main bench: 40 ADDs started at once on one network. */
const CONCURRENT = 40
const PLUGINS = ["loopback", "bridge", "host-local"]
const log = (message: string) => console.error(`[resident] ${message}`)

type Plan = {
  readonly scratch: string
  readonly bin: string
  readonly bare: string
  readonly pods: Record<"multicall" | "resident" | "reference" | "concurrent" | "concurrentRef", Array<Pod>>
}

/** The floor of any Bun program that prints its stdin (the same as run.ts's `bare`). */
const BARE_SOURCE = "await Bun.write(Bun.stdout, await Bun.stdin.text())\n"

/** Outer half: binaries, namespaces, then the inner half inside the host namespace. */
const outer = async (pods: number) => {
  const scratch = setUp(log)
  const bin = join(scratch, "bin")
  sh(["mkdir", "-p", bin])
  copyFileSync(join(REPO, "dist", "bin", "tscni"), join(bin, "tscni"))
  sh(["chmod", "755", join(bin, "tscni")])
  for (const name of PLUGINS) symlinkSync("tscni", join(bin, name))
  writeFileSync(join(scratch, "bare.ts"), BARE_SOURCE)
  const bare = join(scratch, "bare")
  const flags = ["--compile", "--minify", "--bytecode", "--format=esm", "--no-compile-autoload-dotenv", "--no-compile-autoload-bunfig"]
  const built = sh([process.execPath, "build", join(scratch, "bare.ts"), ...flags, "--outfile", bare])
  if (built.exitCode !== 0) throw new Error(`compiling the bare program: ${built.stderr}`)
  const host = createNetns("resident-host")
  sh(["ip", "-n", host, "link", "set", "lo", "up"])
  const podsOf = (group: string, count = pods): Array<Pod> =>
    Array.from({ length: count }, (_, index) => ({ id: containerId(), netns: `/var/run/netns/${createNetns(`resident-${group}-${index}`)}`, index }))
  const plan: Plan = {
    scratch,
    bin,
    bare,
    pods: { multicall: podsOf("m"), resident: podsOf("r"), reference: podsOf("g"), concurrent: podsOf("c", CONCURRENT), concurrentRef: podsOf("cg", CONCURRENT) }
  }
  log(`${pods} pods per variant`)
  const planPath = join(scratch, "plan.json")
  writeFileSync(planPath, JSON.stringify(plan))
  const inner = Bun.spawn(["ip", "netns", "exec", host, process.execPath, import.meta.path, "--inner", planPath], { stdout: "inherit", stderr: "inherit" })
  const exitCode = await inner.exited
  for (const group of Object.values(plan.pods)) for (const pod of group) deleteNetns(pod.netns.slice("/var/run/netns/".length))
  deleteNetns(host)
  if (exitCode !== 0) throw new Error(`inner half failed (exit ${exitCode})`)
  writeFileSync(join(REPO, "docs", "bench", "resident.md"), readFileSync(join(scratch, "resident.md"), "utf8"))
  log("wrote docs/bench/resident.md")
}

type VariantName = "multicall" | "resident" | "reference"

/** Inner half, inside the host namespace: starts the daemon, times every variant, stops it. */
const inner = async (plan: Plan) => {
  const socket = join(plan.scratch, "daemon.sock")
  const daemon = Bun.spawn([join(plan.bin, "tscni"), "daemon", "--socket", socket], { stdout: "ignore", stderr: "inherit" })
  for (let waited = 0; !existsSync(socket); waited += 10) {
    if (waited > 5000) throw new Error("the daemon did not start")
    await Bun.sleep(10)
  }
  try {
    await measure(plan, socket, daemon.pid)
  } finally {
    daemon.kill("SIGTERM")
    await daemon.exited
  }
}

const measure = async (plan: Plan, socket: string, daemonPid: number) => {
  const bridgeConf = (variant: string, subnet: string) =>
    JSON.stringify({
      cniVersion: "1.0.0",
      name: `res-${variant}`,
      type: "bridge",
      bridge: `resbr-${variant}`,
      isGateway: true,
      ipMasq: true,
      hairpinMode: true,
      ipam: { type: "host-local", ranges: [[{ subnet }]], routes: [{ dst: "0.0.0.0/0" }], dataDir: join(plan.scratch, `ipam-${variant}`) }
    })
  const loopbackConf = JSON.stringify({ cniVersion: "1.0.0", name: "cni-loopback", type: "loopback" })
  const variants: Record<VariantName, { dir: string; socket: string; bridge: string }> = {
    multicall: { dir: plan.bin, socket: join(plan.scratch, "no-daemon.sock"), bridge: bridgeConf("m", "10.91.0.0/16") },
    resident: { dir: plan.bin, socket, bridge: bridgeConf("r", "10.92.0.0/16") },
    reference: { dir: REFERENCE, socket: join(plan.scratch, "no-daemon.sock"), bridge: bridgeConf("g", "10.93.0.0/16") }
  }
  const envOf = (name: VariantName, command: string, pod: Pod, ifname: string) => ({
    ...cniEnv(command, pod, ifname, variants[name].dir),
    TSCNI_DAEMON_SOCKET: variants[name].socket
  })
  const ok = (what: string, exec: Exec): Exec => {
    if (exec.exitCode !== 0) throw new Error(`${what} failed (${exec.exitCode}): ${exec.stdout}${exec.stderr}`)
    return exec
  }
  const call = (name: VariantName, plugin: "loopback" | "bridge", command: string, pod: Pod): Exec =>
    ok(
      `${name} ${plugin} ${command} ${pod.index}`,
      execTimed([join(variants[name].dir, plugin)], envOf(name, command, pod, plugin === "loopback" ? "lo" : "eth0"), plugin === "loopback" ? loopbackConf : variants[name].bridge)
    )

  type Samples = { loopback: Array<number>; bridge: Array<number>; pod: Array<number>; cpu: Array<number> }
  const empty = (): Samples => ({ loopback: [], bridge: [], pod: [], cpu: [] })
  const serial: Record<VariantName, { add: Samples; del: Samples }> = {
    multicall: { add: empty(), del: empty() },
    resident: { add: empty(), del: empty() },
    reference: { add: empty(), del: empty() }
  }
  const names: Array<VariantName> = ["multicall", "resident", "reference"]
  const count = plan.pods.multicall.length
  for (const command of ["ADD", "DEL"] as const) {
    log(`serial ${command}: ${count} pods × ${names.join(", ")}, alternating (loopback then bridge, as a Kubernetes runtime does)`)
    for (let index = 0; index < count; index++) {
      for (const name of names.map((_, k) => names[(index + k) % names.length]!)) {
        const pod = plan.pods[name][index]!
        const order: Array<"loopback" | "bridge"> = command === "ADD" ? ["loopback", "bridge"] : ["bridge", "loopback"]
        const [first, second] = order.map((plugin) => call(name, plugin, command, pod))
        const byPlugin = Object.fromEntries(order.map((plugin, k) => [plugin, k === 0 ? first! : second!]))
        const samples = serial[name][command === "ADD" ? "add" : "del"]
        samples.loopback.push(byPlugin.loopback!.ms)
        samples.bridge.push(byPlugin.bridge!.ms)
        samples.pod.push(first!.ms + second!.ms)
        samples.cpu.push(byPlugin.bridge!.cpuMs)
      }
    }
  }

  log(`${CONCURRENT} concurrent bridge ADDs, then DELs: resident and reference`)
  const concurrent = async (name: "resident" | "reference", pods: Array<Pod>) => {
    const wall = async (command: string) => {
      const start = performance.now()
      const execs = await Promise.all(pods.map((pod) => execAsync([join(variants[name].dir, "bridge")], envOf(name, command, pod, "eth0"), variants[name].bridge)))
      const ms = performance.now() - start
      execs.forEach((exec, index) => ok(`${name} concurrent ${command} ${index}`, exec))
      return { ms, execs }
    }
    const add = await wall("ADD")
    const ips = new Set(add.execs.map((exec) => JSON.parse(exec.stdout).ips?.[0]?.address as string))
    const del = await wall("DEL")
    return { add: add.ms, del: del.ms, distinct: ips.size }
  }
  const residentConcurrent = await concurrent("resident", plan.pods.concurrent)
  const referenceConcurrent = await concurrent("reference", plan.pods.concurrentRef)

  log("peak RSS of one call (/usr/bin/time), and of the daemon")
  const rss = (name: VariantName, plugin: "loopback" | "bridge", command: string): number => {
    const pod = plan.pods[name][0]!
    const out = Bun.spawnSync(["/usr/bin/time", "-f", "%M", join(variants[name].dir, plugin)], {
      env: envOf(name, command, pod, plugin === "loopback" ? "lo" : "eth0"),
      stdin: Buffer.from(plugin === "loopback" ? loopbackConf : variants[name].bridge),
      stdout: "pipe",
      stderr: "pipe"
    })
    return Number(out.stderr.toString().trim().split("\n").at(-1)) / 1024
  }
  // idempotent calls on pods whose attachments are gone: DEL, and loopback ADD
  const memory = Object.fromEntries(names.map((name) => [name, { bridgeDel: rss(name, "bridge", "DEL"), loopbackAdd: rss(name, "loopback", "ADD") }])) as Record<
    VariantName,
    { bridgeDel: number; loopbackAdd: number }
  >
  const daemonPeak = Number(/VmHWM:\s+(\d+)/.exec(readFileSync(`/proc/${daemonPid}/status`, "utf8"))?.[1] ?? Number.NaN) / 1024
  const bareMs: Array<number> = []
  for (let index = 0; index < 30; index++) bareMs.push(execTimed([plan.bare], {}, "{}").ms)
  const bareRss = Number(Bun.spawnSync(["/usr/bin/time", "-f", "%M", plan.bare], { stdin: Buffer.from("{}"), stdout: "pipe", stderr: "pipe" }).stderr.toString().trim().split("\n").at(-1)) / 1024

  const fmt = (n: number) => n.toFixed(1)
  const stat = (samples: ReadonlyArray<number>) => `${fmt(median(samples))} (p95 ${fmt(percentile(samples, 0.95))})`
  const ratio = (samples: ReadonlyArray<number>, base: ReadonlyArray<number>) => `${(median(samples) / median(base)).toFixed(2)}×`
  const met = (samples: ReadonlyArray<number>, base: ReadonlyArray<number>, target: number) => (median(samples) / median(base) <= target ? "yes" : "**no**")
  const row = (label: string, pick: (v: VariantName) => ReadonlyArray<number>, target: number, targetText: string) =>
    `| ${label} | ${stat(pick("multicall"))} | ${stat(pick("resident"))} | ${stat(pick("reference"))} | ${ratio(pick("multicall"), pick("reference"))} | ${
      ratio(pick("resident"), pick("reference"))
    } | ${targetText} | ${met(pick("resident"), pick("reference"), target)} |`
  const lines = [
    "# The resident tscni, measured",
    "",
    `Written by \`bun tests/bench/resident.ts ${count}\` on ${new Date().toISOString()} (${navigator.hardwareConcurrency} cores, load ${readFileSync("/proc/loadavg", "utf8").split(" ").slice(0, 3).join(" ")}).`,
    "One host namespace, containerd's default conflists (loopback on `lo`, then bridge + host-local on `eth0`), the variants alternating on every pod. Medians (p95), ms, wall time from spawn to exit as a runtime sees it.",
    "",
    "- **multicall**: `dist/bin/tscni` through links, no daemon: one process per call (host-local in-process).",
    "- **resident**: the same binary, with `tscni daemon` running: each call is forwarded to it and served warm (packages/resident).",
    "- **reference**: Debian's containernetworking-plugins.",
    "",
    "| measure | multicall | resident | reference | multicall ÷ ref | resident ÷ ref | target | resident meets it |",
    "|---|---|---|---|---|---|---|---|",
    row("bridge + host-local ADD", (v) => serial[v].add.bridge, 0.7, "≤ 0.7×"),
    row("bridge + host-local DEL", (v) => serial[v].del.bridge, 0.5, "≤ 0.5×"),
    row("loopback ADD", (v) => serial[v].add.loopback, 0.7, "≤ 0.7×"),
    row("loopback DEL", (v) => serial[v].del.loopback, 0.5, "≤ 0.5×"),
    row("pod ADD (loopback + bridge)", (v) => serial[v].add.pod, 0.7, "≤ 0.7×"),
    row("pod DEL (bridge + loopback)", (v) => serial[v].del.pod, 0.5, "≤ 0.5×"),
    `| CPU of one bridge ADD (process + children) | ${fmt(median(serial.multicall.add.cpu))} | ${fmt(median(serial.resident.add.cpu))} (the forwarding process; the work is the daemon's) | ${fmt(median(serial.reference.add.cpu))} | | | | |`,
    `| ${CONCURRENT} concurrent bridge ADDs, wall | (main bench) | ${fmt(residentConcurrent.add)} (${residentConcurrent.distinct} distinct IPs) | ${fmt(referenceConcurrent.add)} (${referenceConcurrent.distinct} distinct IPs) | | ${(residentConcurrent.add / referenceConcurrent.add).toFixed(2)}× | ≤ 1.0× | ${residentConcurrent.add <= referenceConcurrent.add ? "yes" : "**no**"} |`,
    `| ${CONCURRENT} concurrent bridge DELs, wall | (main bench) | ${fmt(residentConcurrent.del)} | ${fmt(referenceConcurrent.del)} | | ${(residentConcurrent.del / referenceConcurrent.del).toFixed(2)}× | ≤ 1.0× | ${residentConcurrent.del <= referenceConcurrent.del ? "yes" : "**no**"} |`,
    `| peak RSS of one call, bridge DEL, MB | ${fmt(memory.multicall.bridgeDel)} | ${fmt(memory.resident.bridgeDel)} | ${fmt(memory.reference.bridgeDel)} | | | ≤ 30 MB | ${memory.resident.bridgeDel <= 30 ? "yes" : "**no**"} |`,
    `| peak RSS of one call, loopback ADD, MB | ${fmt(memory.multicall.loopbackAdd)} | ${fmt(memory.resident.loopbackAdd)} | ${fmt(memory.reference.loopbackAdd)} | | | ≤ 30 MB | ${memory.resident.loopbackAdd <= 30 ? "yes" : "**no**"} |`,
    "",
    `The daemon itself peaked at ${fmt(daemonPeak)} MB over the whole run (one process for the node, not per call). A compiled Bun program that only prints its stdin: ${fmt(median(bareMs))} ms, ${fmt(bareRss)} MB — the floor of the forwarding process.`,
    ""
  ]
  writeFileSync(join(plan.scratch, "resident.md"), lines.join("\n"))
}

if (process.argv[2] === "--inner") {
  await inner(JSON.parse(readFileSync(process.argv[3]!, "utf8")) as Plan)
  process.exit(0)
} else {
  await outer(Number(process.argv[2] ?? 30))
}
