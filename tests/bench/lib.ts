/**
 * What the bench's two halves share: the variants under test, the conflists (built the
 * way libcni builds each plugin's stdin), plugin execution as a runtime does it, and the
 * statistics. No tscni code is imported: the bench sees only binaries.
 */

/** Who is being measured. `multicall` is tscni's one binary reached through links. */
export type VariantId = "tscni" | "multicall" | "reference"

export interface Variant {
  readonly id: VariantId
  readonly label: string
  /** the CNI bin dir: plugin binaries are `${binDir}/${type}`; also CNI_PATH */
  readonly binDir: string
  /** network name, bridge and subnet differ per variant so both can share a host netns */
  readonly network: string
  readonly bridge: string
  readonly subnet: string
  /** host-local and tuning state, under the bench's scratch dir */
  readonly dataDir: string
}

export type Json = Record<string, any>

/** PATH for plugins: the reference portmap needs iptables from /usr/sbin. */
export const PLUGIN_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

/** The plugins of the full chain, in order (bandwidth and tuning only when they work). */
export type ChainPlugin = "bridge" | "portmap" | "bandwidth" | "tuning"

/** A Kubernetes-style pod network list (containerd's default conflist, plus bandwidth and tuning). */
export const podNetwork = (variant: Variant, chain: ReadonlyArray<ChainPlugin>): Json => {
  const plugins: Record<ChainPlugin, Json> = {
    bridge: {
      type: "bridge",
      bridge: variant.bridge,
      isGateway: true,
      ipMasq: true,
      hairpinMode: true,
      ipam: {
        type: "host-local",
        ranges: [[{ subnet: variant.subnet }]],
        routes: [{ dst: "0.0.0.0/0" }],
        dataDir: `${variant.dataDir}/ipam`
      }
    },
    portmap: { type: "portmap", capabilities: { portMappings: true } },
    bandwidth: { type: "bandwidth", capabilities: { bandwidth: true } },
    tuning: { type: "tuning", sysctl: { "net.core.somaxconn": "1024" }, dataDir: `${variant.dataDir}/tuning` }
  }
  return { cniVersion: "1.0.0", name: variant.network, plugins: chain.map((type) => plugins[type]) }
}

/** The loopback network a Kubernetes runtime runs for every pod before the pod network. */
export const loopbackNetwork = (): Json => ({ cniVersion: "1.0.0", name: "cni-loopback", plugins: [{ type: "loopback" }] })

/** What the runtime knows about one pod: its capability arguments. */
export interface PodArgs {
  readonly portMappings: ReadonlyArray<Json>
  readonly bandwidth: Json
}

export const podArgs = (index: number): PodArgs => ({
  portMappings: [{ hostPort: 30000 + index, containerPort: 80, protocol: "tcp" }],
  bandwidth: { ingressRate: 10_000_000, ingressBurst: 1_000_000, egressRate: 10_000_000, egressBurst: 1_000_000 }
})

/**
 * One plugin's stdin, as libcni builds it: the plugin's own keys, the list's cniVersion
 * and name, `runtimeConfig` with only the capabilities the plugin declares, prevResult.
 */
export const pluginStdin = (list: Json, plugin: Json, args: PodArgs | undefined, prevResult: Json | undefined): string => {
  const conf: Json = { ...plugin, cniVersion: list.cniVersion, name: list.name }
  const capabilities = (plugin.capabilities ?? {}) as Record<string, boolean>
  const runtimeConfig: Json = {}
  if (args !== undefined) {
    for (const key of ["portMappings", "bandwidth"] as const) {
      if (capabilities[key] === true) runtimeConfig[key] = args[key]
    }
  }
  if (Object.keys(runtimeConfig).length > 0) conf.runtimeConfig = runtimeConfig
  if (prevResult !== undefined) conf.prevResult = prevResult
  return JSON.stringify(conf)
}

/** A pod as the runtime sees it: a container ID and a network namespace path. */
export interface Pod {
  readonly id: string
  readonly netns: string
  readonly index: number
}

/** The CNI_* environment of one request (Kubernetes-style CNI_ARGS). */
export const cniEnv = (command: string, pod: Pod, ifname: string, cniPath: string): Record<string, string> => ({
  PATH: PLUGIN_PATH,
  CNI_COMMAND: command,
  CNI_CONTAINERID: pod.id,
  CNI_NETNS: pod.netns,
  CNI_IFNAME: ifname,
  CNI_PATH: cniPath,
  CNI_ARGS: `IgnoreUnknown=1;K8S_POD_NAMESPACE=bench;K8S_POD_NAME=pod-${pod.index};K8S_POD_INFRA_CONTAINER_ID=${pod.id}`
})

/** The environment podman gives VERSION (observed): everything else is "dummy". */
export const versionEnv = (): Record<string, string> => ({
  PATH: PLUGIN_PATH,
  CNI_COMMAND: "VERSION",
  CNI_NETNS: "dummy",
  CNI_IFNAME: "dummy",
  CNI_PATH: "dummy"
})

export interface Exec {
  readonly ms: number
  /** user + system CPU of the process and the children it waited for: hardly moved by machine load */
  readonly cpuMs: number
  readonly exitCode: number
  readonly stdout: string
  readonly stderr: string
}

/** Executes one binary as a runtime does (env + stdin, waits for exit); timed from spawn to exit. */
export const execTimed = (argv: ReadonlyArray<string>, env: Record<string, string>, stdin: string): Exec => {
  const input = Buffer.from(stdin)
  const start = Bun.nanoseconds()
  const proc = Bun.spawnSync([...argv], { env, stdin: input, stdout: "pipe", stderr: "pipe" })
  const ms = (Bun.nanoseconds() - start) / 1e6
  const cpuMs = Number(proc.resourceUsage.cpuTime.total) / 1000
  return { ms, cpuMs, exitCode: proc.exitCode ?? -1, stdout: proc.stdout.toString(), stderr: proc.stderr.toString() }
}

/** The same without blocking, for concurrent ADDs. */
export const execAsync = async (argv: ReadonlyArray<string>, env: Record<string, string>, stdin: string): Promise<Exec> => {
  const start = Bun.nanoseconds()
  const proc = Bun.spawn([...argv], { env, stdin: Buffer.from(stdin), stdout: "pipe", stderr: "pipe" })
  const [stdout, stderr, exitCode] = await Promise.all([
    new Response(proc.stdout).text(),
    new Response(proc.stderr).text(),
    proc.exited
  ])
  const cpuMs = Number(proc.resourceUsage()?.cpuTime.total ?? 0) / 1000
  return { ms: (Bun.nanoseconds() - start) / 1e6, cpuMs, exitCode, stdout, stderr }
}

export const parseJson = (text: string): Json | undefined => {
  try {
    const value: unknown = JSON.parse(text)
    return typeof value === "object" && value !== null ? (value as Json) : undefined
  } catch {
    return undefined
  }
}

/** A failed exec, kept for the report (the bench goes on; the count is printed). */
export interface Failure {
  readonly what: string
  readonly exitCode: number
  readonly output: string
}

export const failure = (what: string, exec: Exec): Failure => ({
  what,
  exitCode: exec.exitCode,
  output: (exec.stdout + exec.stderr).trim().slice(0, 400)
})

/** The value below which a fraction `p` of the samples fall (nearest rank). */
export const percentile = (samples: ReadonlyArray<number>, p: number): number => {
  if (samples.length === 0) return Number.NaN
  const sorted = [...samples].sort((a, b) => a - b)
  return sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil(p * sorted.length) - 1))]!
}

export const median = (samples: ReadonlyArray<number>): number => {
  if (samples.length === 0) return Number.NaN
  const sorted = [...samples].sort((a, b) => a - b)
  const mid = Math.floor(sorted.length / 2)
  return sorted.length % 2 === 1 ? sorted[mid]! : (sorted[mid - 1]! + sorted[mid]!) / 2
}

/** Rotates a list by `by` places: the order of the variants changes every round. */
export const rotate = <T>(items: ReadonlyArray<T>, by: number): Array<T> => {
  const k = items.length === 0 ? 0 : by % items.length
  return [...items.slice(k), ...items.slice(0, k)]
}

/** A 64-hex container ID, like the ones runtimes make. */
export const containerId = (): string => {
  const bytes = crypto.getRandomValues(new Uint8Array(32))
  return Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("")
}

// ---- the plan the outer process hands to the inner one, and what comes back ----

export interface Plan {
  readonly phase: "probe" | "serial" | "chain" | "concurrent" | "memory" | "profile"
  readonly variants: ReadonlyArray<Variant>
  /** pods per variant id, created by the outer process before the phase */
  readonly pods: Record<string, ReadonlyArray<Pod>>
  readonly chain: ReadonlyArray<ChainPlugin>
  /** concurrent phase: how many rounds (each round: every variant, 40 ADDs then 40 DELs) */
  readonly rounds: number
  /** memory phase: the `time` binary, and the baseline programs (bare Bun, empty Bun) by name */
  readonly timeBinary: string
  readonly baselines: Record<string, string>
  readonly scratch: string
  /** profile phase: plugin → instrumented build of it (see profile.ts), and how many runs */
  readonly profile?: { readonly probes: Record<string, string>; readonly probesNoBytecode: Record<string, string>; readonly runs: number }
}

/** Serial phase, one entry per pod and variant. */
export interface SerialSample {
  readonly loopbackAdd: number
  readonly bridgeAdd: number
  readonly bridgeDel: number
  readonly loopbackDel: number
  /** the same four, CPU ms (user + system, children included) */
  readonly cpu: { readonly loopbackAdd: number; readonly bridgeAdd: number; readonly bridgeDel: number; readonly loopbackDel: number }
}

export interface SerialOutcome {
  readonly samples: Record<string, Array<SerialSample>>
  readonly failures: Array<Failure>
}

/** Chain phase: per variant, per plugin, the ADD and DEL times of each pod. */
export interface ChainOutcome {
  readonly add: Record<string, Record<string, Array<number>>>
  readonly del: Record<string, Record<string, Array<number>>>
  /** the same, CPU ms */
  readonly addCpu: Record<string, Record<string, Array<number>>>
  readonly delCpu: Record<string, Record<string, Array<number>>>
  readonly failures: Array<Failure>
}

export interface ConcurrentRun {
  readonly variant: VariantId
  readonly round: number
  readonly addWallMs: number
  readonly delWallMs: number
  /** CPU ms summed over the 40 processes (and their children) */
  readonly addCpuMs: number
  readonly delCpuMs: number
  readonly succeeded: number
  readonly distinctIps: number
  readonly failures: Array<Failure>
}

/** Memory phase: peak resident KB per invocation, keyed `${plugin} ${verb}`, per variant. */
export interface MemoryOutcome {
  readonly peakKb: Record<string, Record<string, Array<number>>>
  readonly failures: Array<Failure>
}

export interface ProbeOutcome {
  readonly ok: boolean
  readonly detail: string
}

/** Profile phase: one instrumented invocation. */
export interface ProfileSample {
  /** wall ms from spawn to exit, seen by the parent */
  readonly ms: number
  /** user + system CPU ms of the process and the children it waited for */
  readonly cpuMs: number
  /** probe marks relative to spawn (ms): main = first line of the entry, imported = plugin module graph loaded, exit */
  readonly marks?: Record<string, number>
  /** TSCNI_LOG=debug step durations (ms), in order, as `step phase` */
  readonly steps?: Array<[string, number]>
}

export interface ProfileOutcome {
  /** `${variant} ${what}` → samples */
  readonly samples: Record<string, Array<ProfileSample>>
  /** `${variant} ${what}` → strace -f -c summary: syscall → calls */
  readonly syscalls: Record<string, Record<string, number>>
  readonly failures: Array<Failure>
}
