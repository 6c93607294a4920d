/**
 * `bun tests/bench/scale-profile.ts [iterations]`: where the busy node's cost comes from
 * (docs/bench/scale-profile.md, .json). The busy-node benchmark (scale.ts) grows links,
 * keyed-table elements and foreign rules together; this separates them, each on an
 * otherwise empty node, and times the same probe chain (bridge → portmap, ADD then DEL)
 * per process and through `tscni agent`, with each call's CPU (the agent's own CPU over the
 * call included) and one TSCNI_LOG=debug trace per state:
 *
 * - empty: nothing but the probe's network (the probe is its only pod: DEL removes the bridge);
 * - keeper: the same with one other pod on the network, so the bridge stays;
 * - links: 750 pod-like links in the host namespace (veths on a bridge, their peers in another
 *   namespace: what 250 pods × 3 networks add), no pods;
 * - foreign: 5,000 nft + 5,000 iptables-nft rules (scale.ts's), no pods;
 * - elements: 750 pods' hostPort elements in the probe network's portmap table (portmap ADD
 *   with a prevResult of addresses only: no link, no bridge port), nothing else.
 *
 * Then: libnftables' element commands (the nft CLI, the same library at the same version)
 * with the netlink dumps each makes (strace), per state; the forwarding floor (a forwarded
 * call whose work is nil) against a compiled Bun program; and a 100-pod burst through the
 * agent with the agent's CPU over it (one JS thread serves every call).
 *
 * Run as root after `bun run build`; about 2–3 minutes. Namespaces are the bench's
 * (host.ts), removed on every path; nothing touches the real host's network.
 */
import { chmodSync, copyFileSync, existsSync, mkdirSync, readdirSync, readFileSync, statSync, symlinkSync, writeFileSync } from "node:fs"
import { join, resolve } from "node:path"
import { cleanup, createNetns, deleteNetns, setUp, sh } from "./host.ts"
import { cniEnv, containerId, type Exec, execAsync, execTimed, type Json, median, parseJson, PLUGIN_PATH, type Pod, pluginStdin } from "./lib.ts"
import { FOREIGN_IPT_RULES, FOREIGN_NFT_RULES, foreignIptablesScript, foreignNftScript } from "./scale.ts"

const REPO = resolve(import.meta.dir, "..", "..")
const DIST = join(REPO, "dist", "bin")
const TIME = "/usr/bin/time"
const LINKS = 750
const ELEMENT_PODS = 750
const BURST = 100
const CALLS = ["bridgeAdd", "portmapAdd", "portmapDel", "bridgeDel"] as const
type CallKey = (typeof CALLS)[number]
type Variant = "process" | "agent"

const origin = Number(process.env.TSCNI_SCALE_ORIGIN ?? Date.now())
const log = (message: string) => console.log(`[scale-profile ${((Date.now() - origin) / 1000).toFixed(0).padStart(4)}s] ${message}`)

interface Plan {
  readonly scratch: string
  readonly bin: string
  readonly lockDir: string
  readonly socket: string
  readonly agentPid: number
  readonly iterations: number
  readonly probe: Pod
  /** another pod on the probe's network, so that its bridge keeps a port */
  readonly keeper: Pod
  /** where the pod ends of the "links" state's veths live */
  readonly sink: string
  readonly burst: ReadonlyArray<Pod>
  readonly baselines: Record<string, string>
}

/** Per state and variant: per call medians of wall ms, caller CPU ms, agent CPU ms; the debug step trace. */
interface StateProfile {
  readonly state: string
  readonly calls: Record<Variant, Record<CallKey, { ms: number; cpuMs: number; agentCpuMs: number }>>
  readonly steps: Record<Variant, Record<CallKey, Array<[string, number]>>>
  readonly nft: Record<string, { ms: number; dumps: Record<string, number>; bytes: number }>
  /** the agent's peak RSS over the state's cycles (VmHWM reset before them), MB */
  readonly agentPeakMb: number
}

// ---------------------------------------------------------------- outer

const BASELINES: Record<string, string> = {
  empty: "export {}\n",
  bare: "await Bun.write(Bun.stdout, await Bun.stdin.text())\n",
  // what a forwarder needs at least: stdin, a unix socket connect (refused here), stdout
  connect: "const input = await Bun.stdin.text()\nawait Bun.connect({ unix: '/nonexistent/tscni.sock', socket: { data: () => {} } }).catch(() => undefined)\nawait Bun.write(Bun.stdout, input)\n"
}

/** This run's processes (the agent, the inner half): killed on every path, before setUp's handlers remove the namespaces. */
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

const outer = async (iterations: number) => {
  if (!existsSync(join(DIST, "tscni"))) throw new Error("dist/bin/tscni is missing: bun run build")
  for (const signal of ["SIGINT", "SIGTERM", "SIGHUP"] as const) process.once(signal, killMine)
  process.once("exit", killMine)
  const scratch = setUp(log)
  const bin = join(scratch, "bin")
  mkdirSync(bin)
  copyFileSync(join(DIST, "tscni"), join(bin, "tscni"))
  chmodSync(join(bin, "tscni"), 0o755)
  for (const name of ["bridge", "portmap", "host-local"]) symlinkSync("tscni", join(bin, name))
  const lockDir = join(scratch, "lock")
  mkdirSync(lockDir)
  const baselines: Record<string, string> = {}
  for (const [name, source] of Object.entries(BASELINES)) {
    writeFileSync(join(scratch, `${name}.ts`), source)
    const out = join(scratch, name)
    const built = sh([process.execPath, "build", join(scratch, `${name}.ts`), "--compile", "--minify", "--bytecode", "--format=esm", "--no-compile-autoload-dotenv", "--no-compile-autoload-bunfig", "--outfile", out])
    if (built.exitCode !== 0) throw new Error(`building ${name}: ${built.stderr}`)
    baselines[name] = out
  }
  const host = createNetns("profile-host")
  sh(["ip", "-n", host, "link", "set", "lo", "up"])
  const probe: Pod = { id: containerId(), netns: `/var/run/netns/${createNetns("profile-probe")}`, index: 0 }
  const sink = createNetns("profile-sink")
  const keeper: Pod = { id: containerId(), netns: `/var/run/netns/${createNetns("profile-keeper")}`, index: 1 }
  const burst: Array<Pod> = Array.from({ length: BURST }, (_, index) => ({ id: containerId(), netns: `/var/run/netns/${createNetns(`profile-burst-${index}`)}`, index }))
  const socket = join(scratch, "agent.sock")
  const agent = Bun.spawn(["ip", "netns", "exec", host, join(bin, "tscni"), "agent", "--socket", socket, "--health-listen", "off"], {
    env: { PATH: PLUGIN_PATH, TSCNI_LOCK_DIR: lockDir },
    stdin: "ignore",
    stdout: "ignore",
    stderr: "inherit"
  })
  mine.add(agent.pid)
  for (let waited = 0; !existsSync(socket); waited += 20) {
    if (waited > 10_000) throw new Error("the agent did not start")
    await Bun.sleep(20)
  }
  const plan: Plan = { scratch, bin, lockDir, socket, agentPid: agent.pid, iterations, probe, keeper, sink, burst, baselines }
  writeFileSync(join(scratch, "plan.json"), JSON.stringify(plan))
  try {
    const inner = Bun.spawn(["ip", "netns", "exec", host, process.execPath, import.meta.path, "--inner", join(scratch, "plan.json")], {
      env: { ...process.env, TSCNI_SCALE_ORIGIN: String(origin) },
      stdout: "inherit",
      stderr: "inherit"
    })
    mine.add(inner.pid)
    if ((await inner.exited) !== 0) throw new Error("the inner half failed")
    mine.delete(inner.pid)
  } finally {
    agent.kill("SIGTERM")
    await Promise.race([agent.exited, Bun.sleep(5000)])
    killMine()
    for (const pod of [probe, keeper, ...burst]) deleteNetns(pod.netns.slice("/var/run/netns/".length))
    deleteNetns(sink)
    deleteNetns(host)
  }
  const result = JSON.parse(readFileSync(join(scratch, "profile.json"), "utf8")) as Json
  writeFileSync(join(REPO, "docs", "bench", "scale-profile.json"), JSON.stringify({ date: new Date().toISOString(), builtAt: statSync(join(DIST, "tscni")).mtime.toISOString(), ...result }, null, 1))
  writeFileSync(join(REPO, "docs", "bench", "scale-profile.md"), report(result, iterations, statSync(join(DIST, "tscni")).mtime.toISOString()))
  log("wrote docs/bench/scale-profile.md and scale-profile.json")
}

// ---------------------------------------------------------------- inner (inside the host namespace)

const inner = async (plan: Plan) => {
  const list: Json = {
    cniVersion: "1.0.0",
    name: "profile-net",
    plugins: [
      { type: "bridge", bridge: "profile-br", isGateway: true, ipMasq: true, hairpinMode: true, ipam: { type: "host-local", ranges: [[{ subnet: "10.170.0.0/16" }]], routes: [{ dst: "0.0.0.0/0" }], dataDir: join(plan.scratch, "ipam") } },
      { type: "portmap", capabilities: { portMappings: true } }
    ]
  }
  const [bridgeConf, portmapConf] = list.plugins as Array<Json>
  const args = (port: number) => ({ portMappings: [{ hostPort: port, containerPort: 80, protocol: "tcp" }], bandwidth: {} })
  const env = (v: Variant, command: string, pod: Pod, extra: Record<string, string> = {}) => ({
    ...cniEnv(command, pod, "eth0", plan.bin),
    TSCNI_DAEMON_SOCKET: v === "agent" ? plan.socket : join(plan.scratch, "nothing-listens.sock"),
    TSCNI_LOCK_DIR: plan.lockDir,
    ...extra
  })
  const agentCpuMs = (): number => {
    let ns = 0
    for (const task of readdirSync(`/proc/${plan.agentPid}/task`)) {
      try {
        ns += Number(readFileSync(`/proc/${plan.agentPid}/task/${task}/schedstat`, "utf8").split(" ")[0])
      } catch {
        // the thread ended
      }
    }
    return ns / 1e6
  }
  const agentStatMs = (): number => {
    const stat = readFileSync(`/proc/${plan.agentPid}/stat`, "utf8")
    const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ")
    return (Number(fields[11]) + Number(fields[12])) * 10
  }
  const run = (v: Variant, argv: Array<string>, e: Record<string, string>, stdin: string): { exec: Exec; agentMs: number } => {
    const before = v === "agent" ? agentCpuMs() : 0
    const exec = execTimed(argv, e, stdin)
    if (exec.exitCode !== 0) throw new Error(`${v} ${argv.at(-1)} ${e.CNI_COMMAND}: ${exec.stdout}${exec.stderr}`)
    return { exec, agentMs: v === "agent" ? agentCpuMs() - before : 0 }
  }
  const cycle = (v: Variant, extra: Record<string, string> = {}) => {
    const pod = { ...plan.probe, id: containerId() }
    const out: Partial<Record<CallKey, { exec: Exec; agentMs: number }>> = {}
    out.bridgeAdd = run(v, [join(plan.bin, "bridge")], env(v, "ADD", pod, extra), pluginStdin(list, bridgeConf!, args(29999), undefined))
    const bridged = parseJson(out.bridgeAdd.exec.stdout)
    out.portmapAdd = run(v, [join(plan.bin, "portmap")], env(v, "ADD", pod, extra), pluginStdin(list, portmapConf!, args(29999), bridged))
    const result = parseJson(out.portmapAdd.exec.stdout)
    out.portmapDel = run(v, [join(plan.bin, "portmap")], env(v, "DEL", pod, extra), pluginStdin(list, portmapConf!, args(29999), result))
    out.bridgeDel = run(v, [join(plan.bin, "bridge")], env(v, "DEL", pod, extra), pluginStdin(list, bridgeConf!, args(29999), result))
    return out as Record<CallKey, { exec: Exec; agentMs: number }>
  }

  const pmTable = () => sh(["nft", "list", "tables"]).stdout.split("\n").map((l) => l.trim().split(" ")).find((w) => w[2]?.startsWith("tscni-pm-"))?.slice(1).join(" ")
  /** One nft CLI command: median wall of 10, and the dumps it asked the kernel for (strace). */
  const nftCost = (args: Array<string>, before?: Array<string>) => {
    const ms: Array<number> = []
    const prepare = () => before !== undefined && execTimed(["nft", ...before], { PATH: PLUGIN_PATH }, "")
    for (let i = 0; i < 10; i++) {
      prepare()
      const exec = execTimed(["nft", ...args], { PATH: PLUGIN_PATH }, "")
      if (exec.exitCode !== 0) throw new Error(`nft ${args.join(" ")}: ${exec.stderr}`)
      ms.push(exec.ms)
    }
    prepare()
    const trace = join(plan.scratch, "nft.strace")
    execTimed(["strace", "-f", "-e", "trace=sendto,recvmsg", "-o", trace, "nft", ...args], { PATH: PLUGIN_PATH }, "")
    const text = readFileSync(trace, "utf8")
    const dumps: Record<string, number> = {}
    for (const m of text.matchAll(/NFT_MSG_(\w+), nlmsg_flags=NLM_F_REQUEST\|NLM_F_DUMP/g)) dumps[m[1]!] = (dumps[m[1]!] ?? 0) + 1
    const bytes = [...text.matchAll(/^\d+\s+recvmsg\(.*= (\d+)$/gm)].reduce((sum, m) => sum + Number(m[1]), 0)
    return { ms: median(ms), dumps, bytes }
  }

  const profileState = (state: string): StateProfile => {
    log(`${state}: ${plan.iterations} cycles per process and through the agent`)
    const samples: Record<Variant, Array<Record<CallKey, { exec: Exec; agentMs: number }>>> = { process: [], agent: [] }
    writeFileSync(`/proc/${plan.agentPid}/clear_refs`, "5")
    cycle("process")
    cycle("agent")
    for (let i = 0; i < plan.iterations; i++) for (const v of (i % 2 === 0 ? ["process", "agent"] : ["agent", "process"]) as Array<Variant>) samples[v].push(cycle(v))
    const agentPeakMb = Number(/VmHWM:\s+(\d+)/.exec(readFileSync(`/proc/${plan.agentPid}/status`, "utf8"))?.[1] ?? Number.NaN) / 1024
    const calls = Object.fromEntries((["process", "agent"] as const).map((v) => [v, Object.fromEntries(CALLS.map((k) => [k, {
      ms: median(samples[v].map((s) => s[k].exec.ms)),
      cpuMs: median(samples[v].map((s) => s[k].exec.cpuMs)),
      agentCpuMs: median(samples[v].map((s) => s[k].agentMs))
    }]))])) as StateProfile["calls"]
    const steps = Object.fromEntries((["process", "agent"] as const).map((v) => {
      const traced = cycle(v, { TSCNI_LOG: "debug" })
      return [v, Object.fromEntries(CALLS.map((k) => [k, [...traced[k].exec.stderr.matchAll(/step=(\S+) phase=(\S+) outcome=\S+ durationMs=(\d+(?:\.\d+)?)/g)].map((m) => [`${m[1]} ${m[2]}`, Number(m[3])])]))]
    })) as StateProfile["steps"]
    const table = pmTable()
    const nft: StateProfile["nft"] = {}
    if (table !== undefined) {
      const create = ["create", "element", ...table.split(" "), "dnat4", "{ tcp . 65000 comment \"profile\" : 10.170.255.1 . 80 }"]
      const remove = ["delete", "element", ...table.split(" "), "dnat4", "{ tcp . 65000 }"]
      nft["create element"] = nftCost(create, remove)
      nft["get element"] = nftCost(["get", "element", ...table.split(" "), "dnat4", "{ tcp . 65000 }"], create)
      nft["delete element"] = nftCost(remove, create)
      nft["list table (ours)"] = nftCost(["list", "table", ...table.split(" ")])
    }
    const a = calls.agent
    log(`  agent CPU ms (agent + forwarding) per call: ${CALLS.map((k) => `${k} ${(a[k].agentCpuMs + a[k].cpuMs).toFixed(1)}`).join(", ")}; per process: ${CALLS.map((k) => `${k} ${calls.process[k].cpuMs.toFixed(1)}`).join(", ")}`)
    return { state, calls, steps, nft, agentPeakMb }
  }

  const states: Array<StateProfile> = []
  states.push(profileState("empty"))

  // the same with one other pod on the network: the probe's DEL no longer removes the bridge (nor its ADD creates it)
  const keeperAdd = run("agent", [join(plan.bin, "bridge")], env("agent", "ADD", plan.keeper), pluginStdin(list, bridgeConf!, args(29998), undefined))
  const keeperResult = parseJson(keeperAdd.exec.stdout)
  states.push(profileState("empty + one other pod on the network (its bridge stays)"))
  run("agent", [join(plan.bin, "bridge")], env("agent", "DEL", plan.keeper), pluginStdin(list, bridgeConf!, args(29998), keeperResult))

  // links alone
  // pod-like links: veths on a bridge of their own, their other ends in another namespace (as a pod's eth0 is)
  writeFileSync(join(plan.scratch, "links.batch"), ["link add prof-br type bridge", ...Array.from({ length: LINKS }, (_, i) => `link add prof${i} type veth peer name p${i} netns ${plan.sink}`), ...Array.from({ length: LINKS }, (_, i) => `link set prof${i} master prof-br up`)].join("\n") + "\n")
  if (sh(["ip", "-batch", join(plan.scratch, "links.batch")]).exitCode !== 0) throw new Error("adding the links failed")
  states.push(profileState(`+${LINKS} pod-like links (veths on another bridge), no pods`))
  writeFileSync(join(plan.scratch, "links-del.batch"), [...Array.from({ length: LINKS }, (_, i) => `link del prof${i}`), "link del prof-br"].join("\n") + "\n")
  sh(["ip", "-batch", join(plan.scratch, "links-del.batch")])

  // foreign rules alone
  writeFileSync(join(plan.scratch, "foreign.nft"), foreignNftScript(FOREIGN_NFT_RULES))
  writeFileSync(join(plan.scratch, "foreign.ipt"), foreignIptablesScript(FOREIGN_IPT_RULES, false))
  writeFileSync(join(plan.scratch, "foreign-rm.ipt"), foreignIptablesScript(FOREIGN_IPT_RULES, true))
  if (sh(["nft", "-f", join(plan.scratch, "foreign.nft")]).exitCode !== 0 || sh(["iptables-restore", "--noflush", join(plan.scratch, "foreign.ipt")]).exitCode !== 0) throw new Error("loading the foreign rules failed")
  states.push(profileState(`+${FOREIGN_NFT_RULES} nft + ${FOREIGN_IPT_RULES} iptables-nft foreign rules, no pods`))
  sh(["nft", "delete", "table", "ip", "kube-proxy"])
  sh(["iptables-restore", "--noflush", join(plan.scratch, "foreign-rm.ipt")])

  // the forwarding floor, on the empty node: a forwarded portmap DEL that knows its pod has no hostPort does nothing
  const nilStdin = pluginStdin(list, portmapConf!, { portMappings: [], bandwidth: {} }, { cniVersion: "1.0.0", ips: [{ address: "10.170.255.2/16" }] })
  const floor: Record<string, { ms: number; cpuMs: number; rssMb: number }> = {}
  const rssOf = (argv: Array<string>, e: Record<string, string>, stdin: string) => {
    const out = join(plan.scratch, "time.txt")
    execTimed([TIME, "-f", "%M", "-o", out, ...argv], e, stdin)
    return Number(readFileSync(out, "utf8").trim().split("\n").at(-1)) / 1024
  }
  const timeIt = (name: string, argv: Array<string>, e: Record<string, string>, stdin: string) => {
    const runs = Array.from({ length: 25 }, () => execTimed(argv, e, stdin))
    if (runs.some((r) => r.exitCode !== 0)) throw new Error(`${name}: ${runs.find((r) => r.exitCode !== 0)?.stderr}`)
    floor[name] = { ms: median(runs.map((r) => r.ms)), cpuMs: median(runs.map((r) => r.cpuMs)), rssMb: rssOf(argv, e, stdin) }
  }
  timeIt("forwarded call with nothing to do (portmap DEL, no hostPort)", [join(plan.bin, "portmap")], env("agent", "DEL", plan.probe), nilStdin)
  timeIt("the same per process", [join(plan.bin, "portmap")], env("process", "DEL", plan.probe), nilStdin)
  for (const [name, path] of Object.entries(plan.baselines)) timeIt(`compiled Bun program: ${name}`, [path], { PATH: PLUGIN_PATH }, nilStdin)
  log(`forwarding floor: ${Object.entries(floor).map(([k, f]) => `${k}: ${f.ms.toFixed(1)} ms, ${f.rssMb.toFixed(1)} MB`).join("; ")}`)

  /**
   * While `during` runs: every 100 ms, how long the agent takes to answer a line that is not
   * a call (it answers `fallback` from its socket's data handler, no work): its event loop's delay.
   */
  const loopDelays = async <A>(during: () => Promise<A>): Promise<{ result: A; delaysMs: Array<number> }> => {
    const delaysMs: Array<number> = []
    let running = true
    const prober = (async () => {
      while (running) {
        const t = performance.now()
        await new Promise<void>((resolve) => {
          Bun.connect({
            unix: plan.socket,
            socket: {
              open: (socket) => void socket.write("not a call\n"),
              data: (socket) => {
                delaysMs.push(performance.now() - t)
                socket.end()
                resolve()
              },
              close: () => resolve(),
              error: () => resolve()
            }
          }).catch(() => resolve())
        })
        await Bun.sleep(100)
      }
    })()
    const result = await during()
    running = false
    await prober
    return { result, delaysMs }
  }
  const delayStats = (delaysMs: Array<number>) => ({ n: delaysMs.length, median: median(delaysMs), p90: [...delaysMs].sort((a, b) => a - b)[Math.floor(delaysMs.length * 0.9)] ?? Number.NaN, max: Math.max(...delaysMs) })

  // a burst through the agent on the empty node: wall against the agent's CPU
  const burstOf = async () => {
    const cpu0 = agentStatMs()
    const t0 = Bun.nanoseconds()
    const results = await Promise.all(plan.burst.map(async (pod, i) => {
      const b = await execAsync([join(plan.bin, "bridge")], env("agent", "ADD", pod), pluginStdin(list, bridgeConf!, args(31000 + i), undefined))
      const p = await execAsync([join(plan.bin, "portmap")], env("agent", "ADD", pod), pluginStdin(list, portmapConf!, args(31000 + i), parseJson(b.stdout)))
      return { b, p, result: parseJson(p.stdout) }
    }))
    const addWall = (Bun.nanoseconds() - t0) / 1e6
    const cpu1 = agentStatMs()
    const t1 = Bun.nanoseconds()
    await Promise.all(plan.burst.map(async (pod, i) => {
      await execAsync([join(plan.bin, "portmap")], env("agent", "DEL", pod), pluginStdin(list, portmapConf!, args(31000 + i), results[i]!.result))
      await execAsync([join(plan.bin, "bridge")], env("agent", "DEL", pod), pluginStdin(list, bridgeConf!, args(31000 + i), results[i]!.result))
    }))
    const delWall = (Bun.nanoseconds() - t1) / 1e6
    const cpu2 = agentStatMs()
    return {
      addWallMs: addWall,
      delWallMs: delWall,
      addAgentCpuMs: cpu1 - cpu0,
      delAgentCpuMs: cpu2 - cpu1,
      addForwardCpuMs: results.reduce((sum, r) => sum + r.b.cpuMs + r.p.cpuMs, 0),
      failed: results.filter((r) => r.b.exitCode !== 0 || r.p.exitCode !== 0).length
    }
  }
  const probed = await loopDelays(burstOf)
  const burst = { ...probed.result, loopDelayMs: delayStats(probed.delaysMs) }
  log(`burst of ${BURST} through the agent (empty node): ADD wall ${burst.addWallMs.toFixed(0)} ms with ${burst.addAgentCpuMs.toFixed(0)} ms agent CPU; DEL ${burst.delWallMs.toFixed(0)} ms with ${burst.delAgentCpuMs.toFixed(0)} ms`)

  // elements alone: hostPort elements of many pods in the probe network's table, no links
  log(`adding ${ELEMENT_PODS} pods' hostPort elements (portmap ADD through the agent, prevResult with addresses only)`)
  let next = 0
  await Promise.all(Array.from({ length: 4 }, async () => {
    while (next < ELEMENT_PODS) {
      const i = next++
      const pod = { ...plan.probe, id: containerId(), index: i }
      const prev = { cniVersion: "1.0.0", ips: [{ address: `10.170.${200 + Math.floor(i / 250)}.${(i % 250) + 1}/16` }] }
      const p = await execAsync([join(plan.bin, "portmap")], env("agent", "ADD", pod), pluginStdin(list, portmapConf!, args(32000 + i), prev))
      if (p.exitCode !== 0) throw new Error(`element pod ${i}: ${p.stdout}${p.stderr}`)
    }
  }))
  states.push(profileState(`+${ELEMENT_PODS} pods' hostPort elements (${ELEMENT_PODS * 3} elements), no links`))

  // everything at once (elements + links + foreign rules), then a burst through the agent with TSCNI_LOG=debug:
  // which calls did the agent serve, which ran in their own process (no `ready` within 2 s), and what each cost its process
  sh(["ip", "-batch", join(plan.scratch, "links.batch")])
  sh(["nft", "-f", join(plan.scratch, "foreign.nft")])
  sh(["iptables-restore", "--noflush", join(plan.scratch, "foreign.ipt")])
  states.push(profileState("all three: elements + links + foreign rules"))
  log(`burst of ${BURST} through the agent on that node, TSCNI_LOG=debug: who served each call`)
  const served: Array<{ served: boolean; cpuMs: number; ms: number; call: string }> = []
  const debugEnv = { TSCNI_LOG: "debug" }
  const cpuBefore = agentStatMs()
  const tb = Bun.nanoseconds()
  const { result: busy, delaysMs: busyDelays } = await loopDelays(() => Promise.all(plan.burst.map(async (pod, i) => {
    const b = await execAsync([join(plan.bin, "bridge")], env("agent", "ADD", pod, debugEnv), pluginStdin(list, bridgeConf!, args(33000 + i), undefined))
    const p = await execAsync([join(plan.bin, "portmap")], env("agent", "ADD", pod, debugEnv), pluginStdin(list, portmapConf!, args(33000 + i), parseJson(b.stdout)))
    served.push({ served: b.stderr.includes("served by the tscni daemon"), cpuMs: b.cpuMs, ms: b.ms, call: "bridge ADD" })
    served.push({ served: p.stderr.includes("served by the tscni daemon"), cpuMs: p.cpuMs, ms: p.ms, call: "portmap ADD" })
    return parseJson(p.stdout)
  })))
  const busyAddWallMs = (Bun.nanoseconds() - tb) / 1e6
  const busyAgentCpuMs = agentStatMs() - cpuBefore
  await Promise.all(plan.burst.map(async (pod, i) => {
    await execAsync([join(plan.bin, "portmap")], env("agent", "DEL", pod), pluginStdin(list, portmapConf!, args(33000 + i), busy[i]))
    await execAsync([join(plan.bin, "bridge")], env("agent", "DEL", pod), pluginStdin(list, bridgeConf!, args(33000 + i), busy[i]))
  }))
  const yes = served.filter((c) => c.served)
  const no = served.filter((c) => !c.served)
  const busyBurst = {
    addWallMs: busyAddWallMs,
    agentCpuMs: busyAgentCpuMs,
    served: yes.length,
    ranThemselves: no.length,
    servedCpuMs: { median: median(yes.map((c) => c.cpuMs)), max: Math.max(...yes.map((c) => c.cpuMs)) },
    ranThemselvesCpuMs: { median: median(no.map((c) => c.cpuMs)), min: Math.min(...no.map((c) => c.cpuMs)) },
    servedMs: { median: median(yes.map((c) => c.ms)), max: Math.max(...yes.map((c) => c.ms)) },
    ranThemselvesMs: { median: median(no.map((c) => c.ms)), min: Math.min(...no.map((c) => c.ms)) },
    loopDelayMs: delayStats(busyDelays),
    byCall: Object.fromEntries(["bridge ADD", "portmap ADD"].map((call) => [call, { served: yes.filter((c) => c.call === call).length, ranThemselves: no.filter((c) => c.call === call).length }]))
  }
  log(`  ADD wall ${busyAddWallMs.toFixed(0)} ms (agent CPU ${busyAgentCpuMs.toFixed(0)} ms): ${yes.length} calls served by the agent, ${no.length} ran in their own process`)

  writeFileSync(join(plan.scratch, "profile.json"), JSON.stringify({ iterations: plan.iterations, states, floor, burst, busyBurst, load: readFileSync("/proc/loadavg", "utf8").trim() }))
}

// ---------------------------------------------------------------- report

const report = (r: Json, iterations: number, builtAt: string): string => {
  const states = r.states as Array<StateProfile>
  const f = (n: number | undefined, d = 1) => (n === undefined || Number.isNaN(n) ? "–" : n.toFixed(d))
  const table = (header: Array<string>, rows: Array<Array<string>>) => [`| ${header.join(" | ")} |`, `|${header.map(() => "---").join("|")}|`, ...rows.map((row) => `| ${row.join(" | ")} |`)].join("\n")
  const empty = states[0]!
  const out: Array<string> = []
  out.push("# Where the busy node's cost comes from", "")
  out.push(`Written by \`bun tests/bench/scale-profile.ts ${iterations}\` on ${new Date().toISOString()} (tscni built ${builtAt}; load average at the end ${String(r.load).split(" ").slice(0, 3).join(" ")}). Each factor of scale.ts's node states on its own, on an otherwise empty host namespace; the probe chain is scale.ts's (bridge → portmap, ADD then DEL), ${iterations} cycles per variant and state, medians. CPU = user + system ms of the call's process (wait4); for the agent the agent's own CPU over the call (schedstat of its threads) is added.`, "")
  out.push("## CPU per call, and what each factor adds", "")
  const rows: Array<Array<string>> = []
  for (const v of ["process", "agent"] as const) {
    for (const k of CALLS) {
      const cpu = (s: StateProfile) => s.calls[v][k].cpuMs + s.calls[v][k].agentCpuMs
      rows.push([v === "agent" ? "through the agent" : "per process", k, ...states.map((s, i) => (i === 0 ? `${f(cpu(s))} (${f(s.calls[v][k].ms)} wall)` : `${f(cpu(s))} (${cpu(s) - cpu(empty) >= 0 ? "+" : ""}${f(cpu(s) - cpu(empty))})`))])
    }
  }
  rows.push(["through the agent", "the agent's peak RSS over the state's cycles (MB)", ...states.map((s) => f(s.agentPeakMb))])
  out.push(table(["variant", "call", ...states.map((s) => s.state)], rows), "")
  out.push("## Traced steps (`TSCNI_LOG=debug`, one cycle per state, whole ms): the largest", "")
  out.push(table(["state", "variant", "call", "steps"], states.flatMap((s) => (["process", "agent"] as const).flatMap((v) => CALLS.map((k) => [
    s.state,
    v,
    k,
    [...s.steps[v][k]].sort((a, b) => b[1] - a[1]).slice(0, 5).map(([name, ms]) => `${name} ${ms}`).join(", ")
  ])))), "")
  out.push("## libnftables' element commands (nft CLI 1.0.6, the library tscni loads), on the probe network's hostPort table", "")
  out.push("Wall ms of the whole `nft` process (median of 10; its start is ~3–5 ms), the dumps it requested from the kernel (strace: NFT_MSG_* with NLM_F_DUMP) and the bytes it received.", "")
  out.push(table(["state", "command", "ms", "dumps", "bytes received"], states.flatMap((s) => Object.entries(s.nft).map(([cmd, c]) => [
    s.state,
    `\`${cmd}\``,
    f(c.ms),
    Object.entries(c.dumps).map(([m, n]) => `${m}×${n}`).join(" "),
    c.bytes.toLocaleString("en")
  ]))), "")
  out.push("## The forwarding floor (empty node)", "")
  out.push(table(["what", "wall ms", "CPU ms", "peak RSS MB"], Object.entries(r.floor as Record<string, { ms: number; cpuMs: number; rssMb: number }>).map(([k, v]) => [k, f(v.ms), f(v.cpuMs), f(v.rssMb)])), "")
  const b = r.burst as Json
  out.push(`## ${BURST} chains at once through the agent (empty node)`, "")
  out.push(`ADD: ${f(b.addWallMs, 0)} ms wall; the agent used ${f(b.addAgentCpuMs, 0)} ms CPU over it (utime + stime), the ${BURST * 2} forwarding processes ${f(b.addForwardCpuMs, 0)} ms. DEL: ${f(b.delWallMs, 0)} ms wall, agent ${f(b.delAgentCpuMs, 0)} ms CPU. Failed: ${b.failed}. The agent serves every call on one JavaScript thread (netlink and libnftables are synchronous FFI calls on it), so a burst's wall time is at least the agent's CPU for all of it. The agent's event-loop delay during the ADDs and DELs (a line that is not a call, sent every 100 ms, answered from its data handler): median ${f(b.loopDelayMs.median, 0)} ms, p90 ${f(b.loopDelayMs.p90, 0)}, max ${f(b.loopDelayMs.max, 0)} (${b.loopDelayMs.n} probes).`, "")
  const bb = r.busyBurst as Json | undefined
  if (bb !== undefined) {
    out.push(`## ${BURST} chain ADDs at once through the agent on the node with all three (TSCNI_LOG=debug)`, "")
    out.push(`Wall ${f(bb.addWallMs, 0)} ms; the agent used ${f(bb.agentCpuMs, 0)} ms CPU. **${bb.served} of ${BURST * 2} calls were served by the agent, ${bb.ranThemselves} ran in their own process**: their forwarding process got no \`ready\` within 2 s (READY_TIMEOUT_MS) and ran the call itself. The agent's event-loop delay meanwhile (a line that is not a call, every 100 ms): median ${f(bb.loopDelayMs.median, 0)} ms, p90 ${f(bb.loopDelayMs.p90, 0)}, max ${f(bb.loopDelayMs.max, 0)} (${bb.loopDelayMs.n} probes). CPU of a served call's process: median ${f(bb.servedCpuMs.median)} ms, max ${f(bb.servedCpuMs.max)}; of one that ran itself: median ${f(bb.ranThemselvesCpuMs.median)}, min ${f(bb.ranThemselvesCpuMs.min)} (scale.ts counts calls above 50 ms as having run themselves). Wall of a served call: median ${f(bb.servedMs.median, 0)} ms, max ${f(bb.servedMs.max, 0)}; of one that ran itself: median ${f(bb.ranThemselvesMs.median, 0)}, min ${f(bb.ranThemselvesMs.min, 0)}. By call: ${Object.entries(bb.byCall as Record<string, Json>).map(([call, c]) => `${call} ${c.served} served, ${c.ranThemselves} ran themselves`).join("; ")}.`, "")
  }
  return out.join("\n")
}

if (import.meta.main && process.argv[2] === "--inner") {
  await inner(JSON.parse(readFileSync(process.argv[3]!, "utf8")) as Plan)
  process.exit(0)
} else if (import.meta.main) {
  try {
    await outer(Number(process.argv[2] ?? 9))
  } catch (error) {
    console.error(`scale-profile: ${error instanceof Error ? error.stack ?? error.message : String(error)}`)
    process.exitCode = 1
  } finally {
    killMine()
    cleanup()
  }
}
