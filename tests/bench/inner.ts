/**
 * The half of the bench that runs inside the test namespace standing in for the host
 * (`ip netns exec tscni-bench-…-host bun tests/bench/inner.ts plan.json out.json`), so
 * each plugin is spawned directly, as a runtime on that host would spawn it: no wrapper
 * process inside the timing. The outer process (run.ts) creates and removes the
 * namespaces; this one only executes plugins and records times.
 */
import { existsSync, readFileSync, rmSync, writeFileSync } from "node:fs"
import {
  type ChainOutcome,
  type ChainPlugin,
  cniEnv,
  type ConcurrentRun,
  containerId,
  type Exec,
  execAsync,
  execTimed,
  type Failure,
  failure,
  type Json,
  loopbackNetwork,
  type MemoryOutcome,
  parseJson,
  type Plan,
  type Pod,
  type ProfileOutcome,
  type ProfileSample,
  podArgs,
  podNetwork,
  pluginStdin,
  type ProbeOutcome,
  rotate,
  type SerialOutcome,
  type SerialSample,
  type Variant,
  versionEnv
} from "./lib.ts"

const [planPath, outPath] = process.argv.slice(2)
if (planPath === undefined || outPath === undefined) {
  console.error("usage: bun tests/bench/inner.ts <plan.json> <out.json> (run by tests/bench/run.ts)")
  process.exit(2)
}
const plan = JSON.parse(readFileSync(planPath, "utf8")) as Plan

const podsOf = (key: string): ReadonlyArray<Pod> => {
  const pods = plan.pods[key]
  if (pods === undefined) throw new Error(`no pods for ${key}`)
  return pods
}

const binary = (variant: Variant, type: string) => `${variant.binDir}/${type}`

/** ADD of a whole list, one plugin exec after the other, each timed; stops at the first error. */
const addList = (variant: Variant, list: Json, pod: Pod, ifname: string, record: (type: string, ms: number, cpuMs: number) => void, failures: Array<Failure>) => {
  let result: Json | undefined
  for (const plugin of list.plugins as Array<Json>) {
    const run = execTimed([binary(variant, plugin.type)], cniEnv("ADD", pod, ifname, variant.binDir), pluginStdin(list, plugin, podArgs(pod.index), result))
    if (run.exitCode !== 0) {
      failures.push(failure(`${variant.id} ${plugin.type} ADD pod ${pod.index}`, run))
      return undefined
    }
    record(plugin.type, run.ms, run.cpuMs)
    result = parseJson(run.stdout)
  }
  return result
}

/** DEL of a whole list in reverse, prevResult = the list's ADD result, as libcni does. */
const delList = (variant: Variant, list: Json, pod: Pod, ifname: string, result: Json | undefined, record: (type: string, ms: number, cpuMs: number) => void, failures: Array<Failure>) => {
  for (const plugin of [...(list.plugins as Array<Json>)].reverse()) {
    const run = execTimed([binary(variant, plugin.type)], cniEnv("DEL", pod, ifname, variant.binDir), pluginStdin(list, plugin, podArgs(pod.index), result))
    if (run.exitCode !== 0) failures.push(failure(`${variant.id} ${plugin.type} DEL pod ${pod.index}`, run))
    else record(plugin.type, run.ms, run.cpuMs)
  }
}

/** bridge + host-local, with the loopback network a Kubernetes runtime runs first; alternating variants per pod. */
const serial = (): SerialOutcome => {
  const failures: Array<Failure> = []
  const lo = loopbackNetwork()
  const count = podsOf(plan.variants[0]!.id).length
  type Slot = { loopbackAdd?: number; bridgeAdd?: number; bridgeDel?: number; loopbackDel?: number; cpu: Record<string, number> }
  const times = new Map<string, Slot>()
  const results = new Map<string, { lo: Json | undefined; net: Json | undefined }>()
  const slot = (variant: Variant, i: number) => {
    const key = `${variant.id}/${i}`
    if (!times.has(key)) times.set(key, { cpu: {} })
    return times.get(key)!
  }
  for (let i = 0; i < count; i++) {
    for (const variant of rotate(plan.variants, i)) {
      const pod = podsOf(variant.id)[i]!
      const net = podNetwork(variant, ["bridge"])
      const s = slot(variant, i)
      const loResult = addList(variant, lo, pod, "lo", (_, ms, cpu) => ((s.loopbackAdd = ms), (s.cpu.loopbackAdd = cpu)), failures)
      const netResult = addList(variant, net, pod, "eth0", (_, ms, cpu) => ((s.bridgeAdd = ms), (s.cpu.bridgeAdd = cpu)), failures)
      results.set(`${variant.id}/${i}`, { lo: loResult, net: netResult })
    }
  }
  for (let i = 0; i < count; i++) {
    for (const variant of rotate(plan.variants, i)) {
      const pod = podsOf(variant.id)[i]!
      const net = podNetwork(variant, ["bridge"])
      const s = slot(variant, i)
      const r = results.get(`${variant.id}/${i}`)
      delList(variant, net, pod, "eth0", r?.net, (_, ms, cpu) => ((s.bridgeDel = ms), (s.cpu.bridgeDel = cpu)), failures)
      delList(variant, lo, pod, "lo", r?.lo, (_, ms, cpu) => ((s.loopbackDel = ms), (s.cpu.loopbackDel = cpu)), failures)
    }
  }
  const samples: Record<string, Array<SerialSample>> = {}
  for (const variant of plan.variants) {
    samples[variant.id] = []
    for (let i = 0; i < count; i++) {
      const s = slot(variant, i)
      if (s.loopbackAdd !== undefined && s.bridgeAdd !== undefined && s.bridgeDel !== undefined && s.loopbackDel !== undefined) {
        const cpu = { loopbackAdd: s.cpu.loopbackAdd ?? 0, bridgeAdd: s.cpu.bridgeAdd ?? 0, bridgeDel: s.cpu.bridgeDel ?? 0, loopbackDel: s.cpu.loopbackDel ?? 0 }
        samples[variant.id]!.push({ loopbackAdd: s.loopbackAdd, bridgeAdd: s.bridgeAdd, bridgeDel: s.bridgeDel, loopbackDel: s.loopbackDel, cpu })
      }
    }
  }
  return { samples, failures }
}

/** The full chain, plugin by plugin, alternating variants per pod. */
const chain = (): ChainOutcome => {
  const failures: Array<Failure> = []
  const add: ChainOutcome["add"] = {}
  const del: ChainOutcome["del"] = {}
  const addCpu: ChainOutcome["addCpu"] = {}
  const delCpu: ChainOutcome["delCpu"] = {}
  const push = (into: ChainOutcome["add"], intoCpu: ChainOutcome["add"], variant: Variant) => (type: string, ms: number, cpuMs: number) => {
    ;((into[variant.id] ??= {})[type] ??= []).push(ms)
    ;((intoCpu[variant.id] ??= {})[type] ??= []).push(cpuMs)
  }
  const count = podsOf(plan.variants[0]!.id).length
  const results = new Map<string, Json | undefined>()
  for (let i = 0; i < count; i++) {
    for (const variant of rotate(plan.variants, i)) {
      const list = podNetwork(variant, plan.chain)
      results.set(`${variant.id}/${i}`, addList(variant, list, podsOf(variant.id)[i]!, "eth0", push(add, addCpu, variant), failures))
    }
  }
  for (let i = 0; i < count; i++) {
    for (const variant of rotate(plan.variants, i)) {
      const list = podNetwork(variant, plan.chain)
      delList(variant, list, podsOf(variant.id)[i]!, "eth0", results.get(`${variant.id}/${i}`), push(del, delCpu, variant), failures)
    }
  }
  return { add, del, addCpu, delCpu, failures }
}

const podIp = (result: Json | undefined): string | undefined => {
  const ips = result?.ips as Array<Json> | undefined
  const address = ips?.[0]?.address
  return typeof address === "string" ? address.split("/")[0] : undefined
}

/** 40 ADDs at once on one network, then 40 DELs at once; wall time of each batch. */
const concurrent = async (): Promise<Array<ConcurrentRun>> => {
  const runs: Array<ConcurrentRun> = []
  for (let round = 0; round < plan.rounds; round++) {
    for (const variant of rotate(plan.variants, round)) {
      const failures: Array<Failure> = []
      const pods = podsOf(`${variant.id}-${round}`)
      const list = podNetwork(variant, ["bridge"])
      const plugin = (list.plugins as Array<Json>)[0]!
      const path = binary(variant, "bridge")
      let start = Bun.nanoseconds()
      const adds = await Promise.all(pods.map((pod) =>
        execAsync([path], cniEnv("ADD", pod, "eth0", variant.binDir), pluginStdin(list, plugin, podArgs(pod.index), undefined))
      ))
      const addWallMs = (Bun.nanoseconds() - start) / 1e6
      const results = adds.map((run, i) => {
        if (run.exitCode !== 0) failures.push(failure(`${variant.id} concurrent ADD pod ${i}`, run))
        return run.exitCode === 0 ? parseJson(run.stdout) : undefined
      })
      const ips = results.map(podIp).filter((ip): ip is string => ip !== undefined)
      start = Bun.nanoseconds()
      const dels = await Promise.all(pods.map((pod, i) =>
        execAsync([path], cniEnv("DEL", pod, "eth0", variant.binDir), pluginStdin(list, plugin, podArgs(pod.index), results[i]))
      ))
      const delWallMs = (Bun.nanoseconds() - start) / 1e6
      dels.forEach((run, i) => {
        if (run.exitCode !== 0) failures.push(failure(`${variant.id} concurrent DEL pod ${i}`, run))
      })
      runs.push({
        variant: variant.id,
        round,
        addWallMs,
        delWallMs,
        addCpuMs: adds.reduce((sum, run) => sum + run.cpuMs, 0),
        delCpuMs: dels.reduce((sum, run) => sum + run.cpuMs, 0),
        succeeded: results.filter((r) => r !== undefined).length,
        distinctIps: new Set(ips).size,
        failures
      })
    }
  }
  return runs
}

/** Peak resident memory of each invocation, from the `time` binary (wait4's ru_maxrss of the plugin's process tree). */
const memory = (): MemoryOutcome => {
  const failures: Array<Failure> = []
  const peakKb: MemoryOutcome["peakKb"] = {}
  const out = `${plan.scratch}/time-${process.pid}.txt`
  const timed = (variantKey: string, key: string, path: string, env: Record<string, string>, stdin: string): Json | undefined => {
    const run = execTimed([plan.timeBinary, "-f", "%M", "-o", out, path], env, stdin)
    const lines = readFileSync(out, "utf8").trim().split("\n")
    const kb = Number(lines[lines.length - 1])
    if (run.exitCode !== 0 || !Number.isFinite(kb)) {
      failures.push(failure(`${variantKey} ${key}`, run))
      return undefined
    }
    const perVariant = (peakKb[variantKey] ??= {})
    ;(perVariant[key] ??= []).push(kb)
    return parseJson(run.stdout)
  }
  const lo = loopbackNetwork()
  for (const variant of plan.variants) {
    const pods = podsOf(variant.id)
    const list = podNetwork(variant, plan.chain)
    const bridgeConf = (list.plugins as Array<Json>)[0]!
    const types = ["loopback", "host-local", ...plan.chain].filter((type) => existsSync(binary(variant, type)))
    for (const pod of pods) {
      for (const type of types) timed(variant.id, `${type} VERSION`, binary(variant, type), versionEnv(), '{"cniVersion":"1.0.0"}')
      // host-local on its own, as bridge runs it (the bridge's stdin, another attachment)
      const direct = { ...pod, id: containerId() }
      const ipam = pluginStdin(list, bridgeConf, undefined, undefined)
      if (types.includes("host-local")) {
        timed(variant.id, "host-local ADD", binary(variant, "host-local"), cniEnv("ADD", direct, "eth1", variant.binDir), ipam)
        timed(variant.id, "host-local DEL", binary(variant, "host-local"), cniEnv("DEL", direct, "eth1", variant.binDir), ipam)
      }
      const loResult = timed(variant.id, "loopback ADD", binary(variant, "loopback"), cniEnv("ADD", pod, "lo", variant.binDir), pluginStdin(lo, lo.plugins[0], undefined, undefined))
      const chainTypes = plan.chain.filter((type) => types.includes(type))
      let result: Json | undefined
      const used: Array<ChainPlugin> = []
      for (const type of chainTypes) {
        const plugin = (list.plugins as Array<Json>).find((p) => p.type === type)!
        const next = timed(variant.id, `${type} ADD`, binary(variant, type), cniEnv("ADD", pod, "eth0", variant.binDir), pluginStdin(list, plugin, podArgs(pod.index), result))
        if (next === undefined) break
        result = next
        used.push(type)
      }
      for (const type of [...used].reverse()) {
        const plugin = (list.plugins as Array<Json>).find((p) => p.type === type)!
        timed(variant.id, `${type} DEL`, binary(variant, type), cniEnv("DEL", pod, "eth0", variant.binDir), pluginStdin(list, plugin, podArgs(pod.index), result))
      }
      timed(variant.id, "loopback DEL", binary(variant, "loopback"), cniEnv("DEL", pod, "lo", variant.binDir), pluginStdin(lo, lo.plugins[0], undefined, loResult))
    }
  }
  for (let i = 0; i < podsOf(plan.variants[0]!.id).length; i++) {
    for (const [name, path] of Object.entries(plan.baselines)) timed(name, "VERSION", path, versionEnv(), '{"cniVersion":"1.0.0"}')
  }
  rmSync(out, { force: true })
  return { peakKb, failures }
}

/**
 * Does the whole chain ADD and DEL once for every variant, and CHECK for tscni? (bandwidth
 * and tuning are young.) The reference portmap 1.1.1 fails CHECK on IPv4-only pods (a
 * known bug, fixed upstream later), so the reference is not CHECKed.
 */
const probe = (): ProbeOutcome => {
  const problems: Array<string> = []
  for (const variant of plan.variants) {
    const pod = podsOf(variant.id)[0]!
    const list = podNetwork(variant, plan.chain)
    const failures: Array<Failure> = []
    const result = addList(variant, list, pod, "eth0", () => {}, failures)
    if (result !== undefined && variant.id !== "reference") {
      for (const plugin of list.plugins as Array<Json>) {
        const run = execTimed([binary(variant, plugin.type)], cniEnv("CHECK", pod, "eth0", variant.binDir), pluginStdin(list, plugin, podArgs(pod.index), result))
        if (run.exitCode !== 0) failures.push(failure(`${variant.id} ${plugin.type} CHECK`, run))
      }
    }
    delList(variant, list, pod, "eth0", result, () => {}, failures)
    problems.push(...failures.map((f) => `${f.what}: exit ${f.exitCode}: ${f.output}`))
  }
  return { ok: problems.length === 0, detail: problems.join("\n") }
}

/** One invocation with its CPU time, probe marks (PROBE_OUT) and debug step trace, when present. */
const execProfiled = (argv: ReadonlyArray<string>, env: Record<string, string>, stdin: string): { run: Exec; sample: ProfileSample } => {
  const markFile = `${plan.scratch}/marks-${process.pid}.json`
  rmSync(markFile, { force: true })
  const t0 = performance.timeOrigin + performance.now()
  const start = Bun.nanoseconds()
  const proc = Bun.spawnSync([...argv], { env: { ...env, PROBE_OUT: markFile }, stdin: Buffer.from(stdin), stdout: "pipe", stderr: "pipe" })
  const ms = (Bun.nanoseconds() - start) / 1e6
  const cpuMs = Number(proc.resourceUsage.cpuTime.total) / 1000
  const run: Exec = { ms, cpuMs, exitCode: proc.exitCode ?? -1, stdout: proc.stdout.toString(), stderr: proc.stderr.toString() }
  let marks: Record<string, number> | undefined
  if (existsSync(markFile)) {
    marks = Object.fromEntries((JSON.parse(readFileSync(markFile, "utf8")) as Array<[string, number]>).map(([name, at]) => [name, at - t0]))
  }
  const steps = [...run.stderr.matchAll(/step=(\S+) phase=(\S+) outcome=\S+ durationMs=(\d+(?:\.\d+)?)/g)].map(
    (m): [string, number] => [`${m[1]} ${m[2]}`, Number(m[3])]
  )
  return { run, sample: { ms, cpuMs, ...(marks ? { marks } : {}), ...(steps.length > 0 ? { steps } : {}) } }
}

/** strace -f -c of one invocation: calls per syscall, over the process and its children. */
const straced = (argv: ReadonlyArray<string>, env: Record<string, string>, stdin: string): { run: Exec; counts: Record<string, number> } => {
  const out = `${plan.scratch}/strace-${process.pid}.txt`
  const run = execTimed(["strace", "-f", "-c", "-o", out, ...argv], env, stdin)
  const counts: Record<string, number> = {}
  for (const line of readFileSync(out, "utf8").split("\n")) {
    const tokens = line.trim().split(/\s+/)
    if (tokens.length < 5 || !/^\d/.test(tokens[0]!)) continue
    counts[tokens[tokens.length - 1]!] = Number(tokens[3])
  }
  rmSync(out, { force: true })
  return { run, counts }
}

/**
 * Where the time goes (profile.ts): per pod, loopback → bridge (→ host-local) → portmap ADD
 * and the DELs, three ways for tscni (instrumented probes; the real binaries with
 * TSCNI_LOG=debug; probes without bytecode, loopback only) and plainly for the reference;
 * then one strace -f -c of each. A keeper pod stays attached so the bridge persists, as
 * on a node.
 */
const profile = (): ProfileOutcome => {
  const failures: Array<Failure> = []
  const samples: ProfileOutcome["samples"] = {}
  const syscalls: ProfileOutcome["syscalls"] = {}
  const options = plan.profile!
  const lo = loopbackNetwork()
  const record = (key: string, sample: ProfileSample) => (samples[key] ??= []).push(sample)
  type Runner = (type: string) => ReadonlyArray<string>
  /** loopback, bridge, portmap ADD; host-local on its own ADD + DEL; then the DELs; for one pod. */
  const podCycle = (variant: Variant, pod: Pod, pass: string, runner: Runner, env: Record<string, string>, types: ReadonlyArray<string>) => {
    const list = podNetwork(variant, ["bridge", "portmap"])
    const [bridgeConf, portmapConf] = list.plugins as Array<Json>
    const step = (type: string, verb: string, ifname: string, stdin: string, who: Pod = pod) => {
      if (!types.includes(type)) return undefined
      const { run, sample } = execProfiled(runner(type), { ...cniEnv(verb, who, ifname, variant.binDir), ...env }, stdin)
      if (run.exitCode !== 0) {
        failures.push(failure(`${variant.id} ${pass} ${type} ${verb}`, run))
        return undefined
      }
      record(`${variant.id} ${pass} ${type} ${verb}`, sample)
      return parseJson(run.stdout)
    }
    const loResult = step("loopback", "ADD", "lo", pluginStdin(lo, lo.plugins[0], undefined, undefined))
    const bridged = step("bridge", "ADD", "eth0", pluginStdin(list, bridgeConf!, podArgs(pod.index), undefined))
    const mapped = step("portmap", "ADD", "eth0", pluginStdin(list, portmapConf!, podArgs(pod.index), bridged))
    const direct = { ...pod, id: containerId() }
    const ipam = pluginStdin(list, bridgeConf!, undefined, undefined)
    step("host-local", "ADD", "eth1", ipam, direct)
    step("host-local", "DEL", "eth1", ipam, direct)
    step("portmap", "DEL", "eth0", pluginStdin(list, portmapConf!, podArgs(pod.index), mapped ?? bridged))
    step("bridge", "DEL", "eth0", pluginStdin(list, bridgeConf!, podArgs(pod.index), mapped ?? bridged))
    step("loopback", "DEL", "lo", pluginStdin(lo, lo.plugins[0], undefined, loResult))
  }
  const all = ["loopback", "bridge", "portmap", "host-local"]
  const keepers = new Map<string, Json | undefined>()
  for (const variant of plan.variants) {
    const keeper = podsOf(`${variant.id}-keeper`)[0]!
    keepers.set(variant.id, addList(variant, podNetwork(variant, ["bridge"]), keeper, "eth0", () => {}, failures))
  }
  for (let i = 0; i < options.runs; i++) {
    for (const variant of rotate(plan.variants, i)) {
      const pod = podsOf(variant.id)[i]!
      if (variant.id === "reference") {
        podCycle(variant, pod, "plain", (type) => [binary(variant, type)], {}, all)
        continue
      }
      podCycle(variant, pod, "probe", (type) => [options.probes[type]!], {}, all)
      podCycle(variant, pod, "debug", (type) => [binary(variant, type)], { TSCNI_LOG: "debug" }, all)
      podCycle(variant, pod, "nobytecode", (type) => [options.probesNoBytecode[type]!], {}, ["loopback"])
    }
  }
  for (const variant of plan.variants) {
    const pod = podsOf(variant.id)[0]!
    const list = podNetwork(variant, ["bridge", "portmap"])
    const [bridgeConf, portmapConf] = list.plugins as Array<Json>
    const trace = (type: string, verb: string, stdin: string) => {
      const { run, counts } = straced([binary(variant, type)], cniEnv(verb, pod, "eth0", variant.binDir), stdin)
      if (run.exitCode !== 0) failures.push(failure(`${variant.id} strace ${type} ${verb}`, run))
      syscalls[`${variant.id} ${type} ${verb}`] = counts
      return parseJson(run.stdout)
    }
    const bridged = trace("bridge", "ADD", pluginStdin(list, bridgeConf!, podArgs(pod.index), undefined))
    const mapped = trace("portmap", "ADD", pluginStdin(list, portmapConf!, podArgs(pod.index), bridged))
    trace("portmap", "DEL", pluginStdin(list, portmapConf!, podArgs(pod.index), mapped))
    trace("bridge", "DEL", pluginStdin(list, bridgeConf!, podArgs(pod.index), mapped))
  }
  for (const variant of plan.variants) {
    delList(variant, podNetwork(variant, ["bridge"]), podsOf(`${variant.id}-keeper`)[0]!, "eth0", keepers.get(variant.id), () => {}, failures)
  }
  return { samples, syscalls, failures }
}

const outcome = await (async (): Promise<unknown> => {
  switch (plan.phase) {
    case "serial":
      return serial()
    case "chain":
      return chain()
    case "concurrent":
      return concurrent()
    case "memory":
      return memory()
    case "probe":
      return probe()
    case "profile":
      return profile()
  }
})()
writeFileSync(outPath, JSON.stringify(outcome))
