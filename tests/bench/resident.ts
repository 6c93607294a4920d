/**
 * `bun tests/bench/resident.ts [pods]`: what a resident tscni would give, measured rather
 * than guessed (docs/bench/README.md, "What the targets would take"). Not a product
 * feature: a stand-in daemon (this process, serving tscni's bridge plugin from warm code
 * over a unix socket) and a stand-in shim (a compiled Bun program that forwards env +
 * stdin to it), timed against today's multicall binary and the reference plugins on the
 * same host namespace, alternating. Writes docs/bench/resident.md.
 *
 * Run as root after `bun run build`. Namespaces are the bench's (host.ts): removed on every
 * path. Traffic: none (ADD/DEL only).
 */
import { copyFileSync, readFileSync, symlinkSync, writeFileSync } from "node:fs"
import { join, resolve } from "node:path"
import { createNetns, deleteNetns, setUp, sh } from "./host.ts"
import { cniEnv, containerId, execAsync, type Exec, median, percentile, type Pod } from "./lib.ts"

/** As in the main bench: 40 ADDs started at once on one network. */
const CONCURRENT = 40
const REPO = resolve(import.meta.dir, "..", "..")
const log = (message: string) => console.error(`[resident] ${message}`)

/** The request a shim forwards and the answer it prints: one JSON line each way. */
interface Forwarded {
  readonly plugin: string
  readonly env: Record<string, string>
  readonly stdin: string
}
interface Answer {
  readonly stdout: string
  readonly exitCode: number
  /** time the daemon spent on the request, from its first to its last byte */
  readonly daemonMs: number
}

/** The shim: as small as a Bun program that reads stdin can be, plus one socket round trip. */
const SHIM_SOURCE = `
const request = JSON.stringify({ plugin: process.argv0.slice(process.argv0.lastIndexOf("/") + 1), env: process.env, stdin: await Bun.stdin.text() })
let reply = ""
await Bun.connect({ unix: process.env.TSCNI_DAEMON_SOCKET ?? "/run/tscni/daemon.sock", socket: {
  open(socket) { socket.write(request + "\\n") },
  data(_socket, data) { reply += data.toString() },
  async close() { const answer = JSON.parse(reply); await Bun.write(Bun.stdout, answer.stdout); process.exit(answer.exitCode) },
  error() { process.exit(99) }
} })
`
/** The floor of any Bun program that prints its stdin (the same as run.ts's `bare`). */
const BARE_SOURCE = "await Bun.write(Bun.stdout, await Bun.stdin.text())\n"

const compile = (dir: string, name: string, source: string): string => {
  const entry = join(dir, `${name}.ts`)
  writeFileSync(entry, source)
  const outfile = join(dir, name)
  const flags = ["--compile", "--minify", "--bytecode", "--format=esm", "--no-compile-autoload-dotenv", "--no-compile-autoload-bunfig"]
  const out = sh([process.execPath, "build", entry, ...flags, "--outfile", outfile])
  if (out.exitCode !== 0) throw new Error(`compiling ${name}: ${out.stderr}`)
  return outfile
}

/** Outer half: binaries, namespaces, then the inner half inside the host namespace. */
const outer = async (pods: number) => {
  const scratch = setUp(log)
  const bin = join(scratch, "bin")
  sh(["mkdir", "-p", bin, join(scratch, "shim")])
  copyFileSync(join(REPO, "dist", "bin", "tscni"), join(bin, "tscni"))
  sh(["chmod", "755", join(bin, "tscni")])
  for (const name of ["bridge", "host-local"]) symlinkSync("tscni", join(bin, name))
  const shimDir = join(scratch, "shim")
  const shim = compile(scratch, "shim-program", SHIM_SOURCE)
  symlinkSync(shim, join(shimDir, "bridge"))
  const bare = compile(scratch, "bare", BARE_SOURCE)
  log(`compiled the shim and the bare program; ${pods} pods per variant`)
  const host = createNetns("resident-host")
  sh(["ip", "-n", host, "link", "set", "lo", "up"])
  const podsOf = (group: string, count = pods): Array<Pod> =>
    Array.from({ length: count }, (_, index) => ({ id: containerId(), netns: `/var/run/netns/${createNetns(`resident-${group}-${index}`)}`, index }))
  const plan = { scratch, bin, shimDir, bare, pods: { multicall: podsOf("m"), resident: podsOf("r"), reference: podsOf("g"), concurrent: podsOf("c", CONCURRENT), concurrentRef: podsOf("cg", CONCURRENT) } }
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

type Plan = {
  readonly scratch: string
  readonly bin: string
  readonly shimDir: string
  readonly bare: string
  readonly pods: Record<"multicall" | "resident" | "reference" | "concurrent" | "concurrentRef", Array<Pod>>
}

/** Inner half, inside the host namespace: serves the shim from warm code and times everything. */
const inner = async (plan: Plan) => {
  const { Effect, Layer } = await import("effect")
  const { layer: linuxBackend } = await import("@tscni/backend-linux")
  const { handleInvocation } = await import("@tscni/skel")
  const { PluginExec, withInProcess } = await import("@tscni/steps")
  const { inProcessIpam } = await import("@tscni/ipam/inProcess")
  const { bridgePlugin } = await import("@tscni/plugin-bridge")

  const spawning = await Effect.runPromise(Effect.provide(Effect.gen(function*() { return yield* PluginExec }), PluginExec.layer))
  const layer = Layer.mergeAll(linuxBackend, Layer.succeed(PluginExec)(withInProcess(spawning, inProcessIpam, join(plan.bin, "tscni"))))
  const daemonMs: Array<number> = []
  const socketPath = join(plan.scratch, "daemon.sock")
  const serve = async (request: Forwarded): Promise<Answer> => {
    const start = performance.now()
    const outcome = await Effect.runPromise(Effect.provide(handleInvocation(bridgePlugin, { env: request.env, stdin: Effect.succeed(request.stdin) }), layer))
    const ms = performance.now() - start
    daemonMs.push(ms)
    return { ...outcome, daemonMs: ms }
  }
  const server = Bun.listen<{ buffer: string }>({
    unix: socketPath,
    socket: {
      open(socket) {
        socket.data = { buffer: "" }
      },
      data(socket, data) {
        socket.data.buffer += data.toString()
        if (!socket.data.buffer.endsWith("\n")) return
        void serve(JSON.parse(socket.data.buffer) as Forwarded).then((answer) => socket.end(JSON.stringify(answer)))
      }
    }
  })

  const dataDir = join(plan.scratch, "ipam")
  const stdin = (variant: string, subnet: string) =>
    JSON.stringify({
      cniVersion: "1.0.0",
      name: `res-${variant}`,
      type: "bridge",
      bridge: `resbr-${variant}`,
      isGateway: true,
      ipMasq: true,
      hairpinMode: true,
      ipam: { type: "host-local", ranges: [[{ subnet }]], routes: [{ dst: "0.0.0.0/0" }], dataDir: `${dataDir}-${variant}` }
    })
  const variants = {
    multicall: { argv: [join(plan.bin, "bridge")], cniPath: plan.bin, stdin: stdin("m", "10.91.0.0/16") },
    resident: { argv: [join(plan.shimDir, "bridge")], cniPath: plan.bin, stdin: stdin("r", "10.92.0.0/16") },
    reference: { argv: ["/usr/lib/cni/bridge"], cniPath: "/usr/lib/cni", stdin: stdin("g", "10.93.0.0/16") }
  } as const
  type VariantName = keyof typeof variants
  const run = (name: VariantName, command: string, pod: Pod): Promise<Exec> => {
    const variant = variants[name]
    return execAsync(variant.argv, { ...cniEnv(command, pod, "eth0", variant.cniPath), TSCNI_DAEMON_SOCKET: socketPath }, variant.stdin)
  }
  const require0 = (what: string, exec: Exec) => {
    if (exec.exitCode !== 0) throw new Error(`${what} failed (${exec.exitCode}): ${exec.stdout}${exec.stderr}`)
    return exec
  }

  const serial: Record<VariantName, { add: Array<number>; del: Array<number>; cpuAdd: Array<number> }> = {
    multicall: { add: [], del: [], cpuAdd: [] },
    resident: { add: [], del: [], cpuAdd: [] },
    reference: { add: [], del: [], cpuAdd: [] }
  }
  const names: Array<VariantName> = ["multicall", "resident", "reference"]
  const count = plan.pods.multicall.length
  for (const command of ["ADD", "DEL"] as const) {
    log(`serial ${command}: ${count} pods × ${names.join(", ")}, alternating`)
    for (let index = 0; index < count; index++) {
      for (const name of names.map((_, k) => names[(index + k) % names.length]!)) {
        const exec = require0(`${name} ${command} ${index}`, await run(name, command, plan.pods[name][index]!))
        serial[name][command === "ADD" ? "add" : "del"].push(exec.ms)
        if (command === "ADD") serial[name].cpuAdd.push(exec.cpuMs)
      }
    }
  }
  const daemonAdd = daemonMs.slice(0, count)
  const daemonDel = daemonMs.slice(count, 2 * count)

  log(`${CONCURRENT} concurrent ADDs, then DELs: resident and reference`)
  const concurrent = async (name: "resident" | "reference", pods: Array<Pod>) => {
    const wall = async (command: string) => {
      const start = performance.now()
      const execs = await Promise.all(pods.map((pod) => run(name, command, pod)))
      const ms = performance.now() - start
      execs.forEach((exec, index) => require0(`${name} concurrent ${command} ${index}`, exec))
      return { ms, execs }
    }
    const add = await wall("ADD")
    const ips = new Set(add.execs.map((exec) => JSON.parse(exec.stdout).ips?.[0]?.address as string))
    const del = await wall("DEL")
    return { add: add.ms, del: del.ms, distinct: ips.size }
  }
  const residentConcurrent = await concurrent("resident", plan.pods.concurrent)
  const referenceConcurrent = await concurrent("reference", plan.pods.concurrentRef)

  log("peak RSS of one invocation (an idempotent DEL) and of the bare program")
  const rss = (argv: ReadonlyArray<string>, cniPath: string, input: string): number => {
    const pod = plan.pods.multicall[0]!
    const out = Bun.spawnSync(["/usr/bin/time", "-f", "%M", ...argv], {
      env: { ...cniEnv("DEL", pod, "eth0", cniPath), TSCNI_DAEMON_SOCKET: socketPath },
      stdin: Buffer.from(input),
      stderr: "pipe",
      stdout: "pipe"
    })
    return Number(out.stderr.toString().trim().split("\n").at(-1)) / 1024
  }
  // the shim needs the daemon: spawnSync would block this event loop, so the shim's RSS is
  // taken through an async spawn of /usr/bin/time
  const rssAsync = async (argv: ReadonlyArray<string>, cniPath: string, input: string): Promise<number> => {
    const pod = plan.pods.multicall[0]!
    const exec = await execAsync(["/usr/bin/time", "-f", "%M", ...argv], { ...cniEnv("DEL", pod, "eth0", cniPath), TSCNI_DAEMON_SOCKET: socketPath }, input)
    return Number(exec.stderr.trim().split("\n").at(-1)) / 1024
  }
  const memory = {
    multicall: rss(variants.multicall.argv, plan.bin, variants.multicall.stdin),
    resident: await rssAsync(variants.resident.argv, plan.bin, variants.resident.stdin),
    reference: rss(variants.reference.argv, "/usr/lib/cni", variants.reference.stdin),
    bare: rss([plan.bare], plan.bin, "{}")
  }
  const bareMs: Array<number> = []
  for (let index = 0; index < 30; index++) bareMs.push((await execAsync([plan.bare], {}, "{}")).ms)
  server.stop(true)

  const fmt = (n: number) => n.toFixed(1)
  const stat = (samples: ReadonlyArray<number>) => `${fmt(median(samples))} (p95 ${fmt(percentile(samples, 0.95))})`
  const ref = { add: median(serial.reference.add), del: median(serial.reference.del) }
  const ratio = (samples: ReadonlyArray<number>, base: number) => `${(median(samples) / base).toFixed(2)}×`
  const bare = median(bareMs)
  const lines = [
    "# A resident tscni: measured",
    "",
    `Written by \`bun tests/bench/resident.ts ${count}\` on ${new Date().toISOString()} (${navigator.hardwareConcurrency} cores, load ${readFileSync("/proc/loadavg", "utf8").split(" ").slice(0, 3).join(" ")}).`,
    "Bridge + host-local, containerd's default conflist, one host namespace, the variants alternating on every pod. Medians (p95), ms.",
    "",
    "- **multicall**: today's tscni, one process per call (`dist/bin/tscni` through a `bridge` link, host-local in-process).",
    "- **resident + Bun shim**: the same tscni code served warm by one long-lived process (this bench stands in for the daemon) and reached by a compiled Bun program that forwards env + stdin over a unix socket and prints the answer.",
    "- **daemon side**: the part of the resident call spent in the daemon (what a call would cost with a shim that starts in ~0: a native one).",
    "- **reference**: Debian's containernetworking-plugins.",
    "",
    "| measure | multicall | resident + Bun shim | daemon side | reference | multicall ÷ ref | resident ÷ ref | daemon side ÷ ref | target |",
    "|---|---|---|---|---|---|---|---|---|",
    `| serial ADD | ${stat(serial.multicall.add)} | ${stat(serial.resident.add)} | ${stat(daemonAdd)} | ${stat(serial.reference.add)} | ${ratio(serial.multicall.add, ref.add)} | ${ratio(serial.resident.add, ref.add)} | ${ratio(daemonAdd, ref.add)} | ≤ 0.7× |`,
    `| serial DEL | ${stat(serial.multicall.del)} | ${stat(serial.resident.del)} | ${stat(daemonDel)} | ${stat(serial.reference.del)} | ${ratio(serial.multicall.del, ref.del)} | ${ratio(serial.resident.del, ref.del)} | ${ratio(daemonDel, ref.del)} | ≤ 0.5× |`,
    `| CPU per ADD (the process and its children) | ${fmt(median(serial.multicall.cpuAdd))} | ${fmt(median(serial.resident.cpuAdd))} (shim only) | | ${fmt(median(serial.reference.cpuAdd))} | | | | |`,
    `| ${CONCURRENT} concurrent ADDs, wall | | ${fmt(residentConcurrent.add)} (${residentConcurrent.distinct} distinct IPs) | | ${fmt(referenceConcurrent.add)} (${referenceConcurrent.distinct} distinct IPs) | | ${(residentConcurrent.add / referenceConcurrent.add).toFixed(2)}× | | ≤ 1.0× |`,
    `| ${CONCURRENT} concurrent DELs, wall | | ${fmt(residentConcurrent.del)} | | ${fmt(referenceConcurrent.del)} | | ${(residentConcurrent.del / referenceConcurrent.del).toFixed(2)}× | | ≤ 1.0× |`,
    `| peak RSS of one call, MB | ${fmt(memory.multicall)} | ${fmt(memory.resident)} (shim) | | ${fmt(memory.reference)} | | | | ≤ 30 |`,
    "",
    `A compiled Bun program that only prints its stdin: ${fmt(bare)} ms, ${fmt(memory.bare)} MB peak RSS — the floor of any Bun shim.`,
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
