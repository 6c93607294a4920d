/**
 * Turns one busy-node run (scale.ts) into docs/bench/scale.md (medians, ratios against the
 * reference, every target of issue #11 met or missed), scale.svg (hand-written SVG: chain
 * ADD and DEL per node state and variant, the bursts) and scale.json (every sample).
 */
import { mkdirSync, writeFileSync } from "node:fs"
import { join } from "node:path"
import { median, percentile } from "./lib.ts"

export type VariantId = "process" | "agent" | "reference"
export const VARIANT_IDS: ReadonlyArray<VariantId> = ["process", "agent", "reference"]
export type BurstAt = "empty" | "busy"
export type CallKey = "bridgeAdd" | "portmapAdd" | "portmapDel" | "bridgeDel"
export const CALL_KEYS: ReadonlyArray<CallKey> = ["bridgeAdd", "portmapAdd", "portmapDel", "bridgeDel"]

/** One probe pod's ADD (bridge, portmap) and DEL (portmap, bridge): ms per call. */
export interface CycleSample {
  /** wall ms from spawn to exit of each call */
  readonly ms: Record<CallKey, number>
  /** user + system CPU ms of the call's process and the children it waited for (agent variant: the forwarding process) */
  readonly cpuMs: Record<CallKey, number>
  /** agent variant: the agent's CPU ms over the call (its threads' schedstat); 0 otherwise */
  readonly agentCpuMs: Record<CallKey, number>
  readonly ip: string
}

/** TSCNI_LOG=debug of one cycle: each call's wall ms, CPU ms and its steps (`name phase`, ms). */
export interface StepTrace {
  readonly state: string
  readonly variant: "process" | "agent"
  readonly calls: ReadonlyArray<{ readonly call: CallKey; readonly ms: number; readonly cpuMs: number; readonly steps: ReadonlyArray<[string, number]> }>
}

export interface StateResult {
  readonly pods: number
  readonly foreign: boolean
  readonly samples: Record<VariantId, Array<CycleSample>>
  readonly wallS: number
  /** the agent over the measured iterations: CPU ms (utime + stime; schedstat), calls it served, memory after */
  readonly agent: { readonly cpuMs: number; readonly schedMs: number; readonly calls: number; readonly rssMb: number; readonly hwmMb: number; readonly threads: number }
  /** peak RSS (MB) of each call of one cycle under /usr/bin/time: agent variant = the forwarding process */
  readonly forwardRssMb: Record<CallKey, number> | undefined
  readonly processRssMb: Record<CallKey, number> | undefined
  readonly census: { readonly links: number; readonly nftTables: number; readonly iptablesNatRules: number; readonly iptablesNatChains: number }
  readonly steps: ReadonlyArray<StepTrace>
  readonly load: string
}

export interface BurstRun {
  readonly at: "empty" | "busy"
  readonly pods: number
  readonly foreign: boolean
  readonly variant: VariantId
  readonly n: number
  readonly addWallMs: number
  readonly delWallMs: number
  readonly addSucceeded: number
  readonly delSucceeded: number
  readonly distinctIps: number
  /** CPU ms of all the processes (and for the agent variant, the agent's over the burst) */
  readonly addCpuMs: number
  readonly delCpuMs: number
  /** each pod's chain ADD (bridge then portmap) and DEL, ms from its first spawn to its last exit */
  readonly addChainMs: ReadonlyArray<number>
  readonly delChainMs: ReadonlyArray<number>
  /** CPU ms of each plugin process of the burst (ADDs then DELs): for the agent variant, above FALLBACK_CPU_MS means the call ran in its own process */
  readonly callCpuMs: ReadonlyArray<number>
  /** agent variant: its RSS after the burst and its peak during it (VmHWM, reset before the burst) */
  readonly agentRssMb: number
  readonly agentHwmMb: number
}

export interface AgentSnapshot {
  readonly when: string
  readonly pods: number
  readonly foreign: boolean
  readonly rssMb: number
  readonly hwmMb: number
  readonly threads: number
  readonly cpuMs: number
}

export interface ScaleResults {
  readonly command: string
  readonly machine: { date: string; cpus: number; cpuModel: string; kernel: string; bun: string; reference: string; iptables: string; nft: string; load: string }
  readonly loadAfter: string
  readonly quick: boolean
  readonly builtAt: string
  readonly durationS: number
  /** of durationS, the time spent waiting for an idle machine (--wait-idle) */
  readonly waitedS?: number
  readonly config: {
    readonly states: ReadonlyArray<number>
    readonly iterations: number
    readonly warmup: number
    readonly burstPods: number
    readonly bursts: Record<BurstAt, ReadonlyArray<VariantId>>
  }
  readonly foreignRules: { readonly nft: number; readonly iptables: number }
  readonly states: ReadonlyArray<StateResult>
  readonly bursts: ReadonlyArray<BurstRun>
  readonly snapshots: ReadonlyArray<AgentSnapshot>
  readonly verifications: ReadonlyArray<{ when: string; variant: VariantId; served: number; calls: number }>
  readonly foreignLoads: ReadonlyArray<{ what: string; ms: number }>
  readonly failures: ReadonlyArray<string>
  readonly agentPid: number
  readonly agentLog: ReadonlyArray<string>
  /** peak RSS (MB) of compiled Bun programs: `empty` (export {}) and `bare` (prints its stdin), 5 runs each */
  readonly baselineRssMb: Record<string, Array<number>>
  /** the first chains of the freshly started agent on the empty node, before the states (absent in runs before it was measured) */
  readonly freshAgent?: ReadonlyArray<CycleSample>
  /** how many chains the agent served on the empty node before the states */
  readonly agentWarmup?: number
}

// ---------------------------------------------------------------- analysis

/**
 * A forwarded call costs its process ~6–10 ms CPU (up to 24 ms seen under heavy load);
 * in a burst, one that ran in its own process cost ≥ 65 ms (scale-profile.ts, which tells
 * them apart by TSCNI_LOG=debug). A forwarding process falls back to running the call itself
 * when the agent has not answered `ready` within 2 s (READY_TIMEOUT_MS).
 */
export const FALLBACK_CPU_MS = 50

const LABEL: Record<VariantId, string> = { process: "tscni per process", agent: "tscni through the agent", reference: "reference" }
/** A cycle's chain ADD (bridge + portmap) and DEL (portmap + bridge), wall ms. */
export const add = (s: CycleSample) => s.ms.bridgeAdd + s.ms.portmapAdd
export const del = (s: CycleSample) => s.ms.portmapDel + s.ms.bridgeDel
const addCpu = (s: CycleSample) => s.cpuMs.bridgeAdd + s.cpuMs.portmapAdd + s.agentCpuMs.bridgeAdd + s.agentCpuMs.portmapAdd
const delCpu = (s: CycleSample) => s.cpuMs.portmapDel + s.cpuMs.bridgeDel + s.agentCpuMs.portmapDel + s.agentCpuMs.bridgeDel

export const stateLabel = (s: { pods: number; foreign: boolean }) => `${s.pods} pods${s.foreign ? " + foreign" : ""}`

const fmt = (value: number | undefined, digits = 1): string => (value === undefined || Number.isNaN(value) ? "–" : value.toFixed(digits))
const x = (value: number | undefined) => `${fmt(value, 2)}×`
const mark = (met: boolean | undefined) => (met === undefined ? "–" : met ? "yes" : "**no**")
const table = (header: ReadonlyArray<string>, rows: ReadonlyArray<ReadonlyArray<string>>): string =>
  [`| ${header.join(" | ")} |`, `|${header.map(() => "---").join("|")}|`, ...rows.map((row) => `| ${row.join(" | ")} |`)].join("\n")

interface StateStats {
  readonly state: StateResult
  readonly label: string
  readonly add: Record<VariantId, number>
  readonly del: Record<VariantId, number>
  readonly addP95: Record<VariantId, number>
  readonly delP95: Record<VariantId, number>
  readonly sum: Record<VariantId, number>
  readonly addCpu: Record<VariantId, number>
  readonly delCpu: Record<VariantId, number>
  readonly n: Record<VariantId, number>
}

const perVariant = (f: (id: VariantId) => number) => Object.fromEntries(VARIANT_IDS.map((id) => [id, f(id)])) as Record<VariantId, number>

const analyse = (r: ScaleResults) => {
  const states: Array<StateStats> = r.states.map((state) => ({
    state,
    label: stateLabel(state),
    add: perVariant((id) => median(state.samples[id].map(add))),
    del: perVariant((id) => median(state.samples[id].map(del))),
    addP95: perVariant((id) => percentile(state.samples[id].map(add), 0.95)),
    delP95: perVariant((id) => percentile(state.samples[id].map(del), 0.95)),
    sum: perVariant((id) => median(state.samples[id].map((s) => add(s) + del(s)))),
    addCpu: perVariant((id) => median(state.samples[id].map(addCpu))),
    delCpu: perVariant((id) => median(state.samples[id].map(delCpu))),
    n: perVariant((id) => state.samples[id].length)
  }))
  const empty = states.find((s) => s.state.pods === 0 && !s.state.foreign)
  const maxPods = Math.max(...r.states.map((s) => s.pods))
  const busiest = states.find((s) => s.state.pods === maxPods && s.state.foreign)
  const growth = perVariant((id) => (empty && busiest ? busiest.sum[id] / empty.sum[id] : Number.NaN))
  const burst = (at: "empty" | "busy", id: VariantId) => r.bursts.find((b) => b.at === at && b.variant === id)
  const at250 = r.states.filter((s) => s.pods === maxPods)
  /** the agent's peaks (VmHWM, reset before each phase) while the node had maxPods pods: the serial states and the busy node's bursts */
  const agentPeaksAtMax = [
    ...at250.map((s) => ({ what: `serial calls, ${stateLabel(s)}`, mb: s.agent.hwmMb })),
    ...r.bursts.filter((b) => b.at === "busy" && b.variant === "agent").map((b) => ({ what: `${b.n}-pod burst, ${b.pods} pods + foreign`, mb: b.agentHwmMb }))
  ]
  const agentRssAtMax = Math.max(...agentPeaksAtMax.map((p) => p.mb))
  const agentHwm = Math.max(...r.snapshots.map((s) => s.hwmMb), ...r.states.map((s) => s.agent.hwmMb), ...r.bursts.map((b) => b.agentHwmMb).filter((v) => v > 0))
  const forwardRss = r.states.flatMap((s) => (s.forwardRssMb ? CALL_KEYS.map((k) => s.forwardRssMb![k]) : [])).filter((v) => Number.isFinite(v))
  const processRss = r.states.flatMap((s) => (s.processRssMb ? CALL_KEYS.map((k) => s.processRssMb![k]) : [])).filter((v) => Number.isFinite(v))
  return { states, empty, busiest, maxPods, growth, burst, at250, agentPeaksAtMax, agentRssAtMax, agentHwm, forwardRss, processRss }
}
type Analysis = ReturnType<typeof analyse>

interface Target {
  readonly target: string
  readonly result: string
  readonly met: boolean | undefined
}

const targets = (r: ScaleResults, a: Analysis): Array<Target> => {
  const out: Array<Target> = []
  const everyState = (what: string, id: VariantId, verb: "ADD" | "DEL", limit: number) => {
    const ratios = a.states.map((s) => ({ label: s.label, ratio: (verb === "ADD" ? s.add : s.del)[id] / (verb === "ADD" ? s.add : s.del).reference }))
    const missed = ratios.filter((q) => !(q.ratio <= limit))
    const worst = ratios.reduce((w, q) => (q.ratio > w.ratio || Number.isNaN(q.ratio) ? q : w), ratios[0]!)
    out.push({
      target: `${what}: chain ${verb} ≤ ${limit}× the reference at every node state`,
      result: `${ratios.map((q) => `${q.label}: ${x(q.ratio)}`).join("; ")} — worst ${x(worst?.ratio)} (${worst?.label})${missed.length > 0 ? `; missed at ${missed.length} of ${ratios.length}` : ""}`,
      met: ratios.length > 0 && missed.length === 0
    })
  }
  everyState("through the agent", "agent", "ADD", 0.5)
  everyState("through the agent", "agent", "DEL", 0.5)
  for (const id of ["process", "agent"] as const) {
    out.push({
      target: `growth (${id === "process" ? "per process" : "through the agent"}): ADD+DEL at ${a.maxPods} pods with the foreign rules ≤ 1.2× the empty node's`,
      result: a.busiest && a.empty ? `${fmt(a.busiest.sum[id])} ms ÷ ${fmt(a.empty.sum[id])} ms = ${x(a.growth[id])} (reference: ${x(a.growth.reference)})` : "not measured",
      met: Number.isNaN(a.growth[id]) ? undefined : a.growth[id] <= 1.2
    })
  }
  everyState("per process", "process", "ADD", 1.5)
  everyState("per process", "process", "DEL", 1.0)
  for (const at of ["empty", "busy"] as const) {
    const agent = a.burst(at, "agent")
    const ref = a.burst(at, "reference")
    if (!agent || !ref) continue
    const where = at === "busy" ? `${agent.pods} pods + foreign rules` : "the empty node"
    const distinct = agent.distinctIps === agent.n && agent.addSucceeded === agent.n
    out.push({
      target: `${agent.n}-pod burst through the agent (${where}): ADD wall ≤ 0.5× the reference's, ${agent.n} distinct IPs`,
      result: `${fmt(agent.addWallMs, 0)} ms vs ${fmt(ref.addWallMs, 0)} ms = ${x(agent.addWallMs / ref.addWallMs)}; ${agent.addSucceeded}/${agent.n} succeeded, ${agent.distinctIps} distinct IPs; ${agent.callCpuMs.slice(0, 2 * agent.n).filter((c) => c > FALLBACK_CPU_MS).length} of ${2 * agent.n} calls ran in their own process (no \`ready\` within 2 s)`,
      met: agent.addWallMs <= 0.5 * ref.addWallMs && distinct
    })
    out.push({
      target: `${agent.n}-pod burst through the agent (${where}): DEL wall ≤ 0.5× the reference's`,
      result: `${fmt(agent.delWallMs, 0)} ms vs ${fmt(ref.delWallMs, 0)} ms = ${x(agent.delWallMs / ref.delWallMs)}; ${agent.delSucceeded}/${agent.n} succeeded; ${agent.callCpuMs.slice(2 * agent.n).filter((c) => c > FALLBACK_CPU_MS).length} of ${2 * agent.n} calls ran in their own process`,
      met: agent.delWallMs <= 0.5 * ref.delWallMs && agent.delSucceeded === agent.n
    })
  }
  out.push({
    target: `agent RSS ≤ 120 MB at ${a.maxPods} pods`,
    result: `peak (VmHWM) ${a.agentPeaksAtMax.map((p) => `${p.what}: ${fmt(p.mb)} MB`).join("; ")}; the highest peak of the whole run ${fmt(a.agentHwm)} MB (see the agent table)`,
    met: Number.isFinite(a.agentRssAtMax) ? a.agentRssAtMax <= 120 : undefined
  })
  out.push({
    target: "forwarding process ≤ 30 MB",
    result: `peak RSS ${fmt(Math.min(...a.forwardRss))}–${fmt(Math.max(...a.forwardRss))} MB over ${a.forwardRss.length} forwarded calls (/usr/bin/time -f %M); a call run in its own process: ${fmt(Math.min(...a.processRss))}–${fmt(Math.max(...a.processRss))} MB; compiled Bun floors: empty program ${fmt(median(r.baselineRssMb.empty ?? []))} MB, one that prints its stdin ${fmt(median(r.baselineRssMb.bare ?? []))} MB`,
    met: a.forwardRss.length > 0 ? Math.max(...a.forwardRss) <= 30 : undefined
  })
  return out
}

// ---------------------------------------------------------------- markdown

/** The measurement that motivated issue #11 (per process, ms), for comparison. */
const ORIGINAL: ReadonlyArray<{ label: string; pods: number; foreign: boolean; tscni: [number, number]; reference: [number, number] }> = [
  { label: "empty node", pods: 0, foreign: false, tscni: [144, 172], reference: [108, 216] },
  { label: "100 pods", pods: 100, foreign: false, tscni: [168, 518], reference: [183, 221] },
  { label: "+ 5,000 nft rules (own table) + 5,000 iptables-nft rules in nat", pods: 0, foreign: true, tscni: [130, 3262], reference: [498, 207] },
  { label: "the same with 200 pods", pods: 200, foreign: true, tscni: [214, 5430], reference: [628, 231] }
]

const markdown = (r: ScaleResults, a: Analysis): string => {
  const m = r.machine
  const out: Array<string> = []
  const ts = targets(r, a)
  out.push("# The busy node: tscni per process, through the agent, and the reference", "")
  out.push(
    `Written by \`${r.command}\` (tests/bench/scale.ts) on ${m.date}: ${m.cpus} × ${m.cpuModel}, Linux ${m.kernel}, Bun ${m.bun}, reference plugins ${m.reference} (Debian), ${m.iptables}, ${m.nft}. Load average before / after: ${m.load.split(" ").slice(0, 3).join(" ")} / ${r.loadAfter.split(" ").slice(0, 3).join(" ")}. Whole run: ${fmt(r.durationS / 60)} min${r.waitedS !== undefined && r.waitedS > 1 ? ` (${fmt(r.waitedS / 60)} of them waiting for the load to drop, --wait-idle)` : ""}. tscni: \`dist/bin/tscni\` built ${r.builtAt}, copied before the run.`,
    ""
  )
  out.push(
    "The chain **bridge** (isGateway, ipMasq, hairpinMode, host-local) **→ portmap** (one hostPort per pod), cniVersion 1.0.0, each plugin spawned as a runtime spawns it (CNI env + stdin, prevResult passed on; DEL in reverse with the ADD's result). " +
      "Three variants on three networks (own bridge, /16 subnet, IPAM dir) side by side in one host namespace:",
    "",
    "- **tscni per process**: the multicall binary through its links, `TSCNI_DAEMON_SOCKET` naming a path where nothing listens: each call is its own process (host-local in-process);",
    "- **tscni through the agent**: the same links, `TSCNI_DAEMON_SOCKET` naming `tscni agent --socket … --health-listen off`, started inside the host namespace; every call is forwarded and served warm (checked: " +
      r.verifications.map((v) => `${v.when}: ${v.variant} ${v.served}/${v.calls} calls "served by the tscni daemon"`).join("; ") +
      ");",
    "- **reference**: `/usr/lib/cni/bridge` and `portmap` (+ host-local); its ipMasq and portmap use iptables (here iptables-nft).",
    "",
    `Node states: ${r.config.states.join(", ")} background pods **per variant** (so ${r.config.states.map((n) => n * 3).join(", ")} on the node), made before the state's timing through the agent (tscni networks) or the reference, each with its hostPort; each state without and with the **foreign rules**: ${r.foreignRules.nft.toLocaleString("en")} nft rules in a kube-proxy-like table of its own (\`table ip kube-proxy\`: ${r.foreignRules.nft / 2} service chains with a DNAT each, ${r.foreignRules.nft / 2} dispatch rules, nat prerouting/output hooks) and ${r.foreignRules.iptables.toLocaleString("en")} iptables-nft rules in \`nat\` (KUBE-SERVICES + ${r.foreignRules.iptables / 2} KUBE-SVC-… chains). ` +
      `Per state: ${r.config.warmup} warm-up + ${r.config.iterations} iterations, each iteration ADD then DEL of a probe pod (its own namespace and hostPort, a fresh container ID) for every variant in turn, the order rotating (A B C, B C A, …). ADD = bridge ADD + portmap ADD, DEL = portmap DEL + bridge DEL, wall time from spawn to exit of each process as the runtime sees it. Medians.`,
    ""
  )

  out.push("## Targets", "")
  out.push(table(["target (issue #11)", "measured", "met"], ts.map((t) => [t.target, t.result, mark(t.met)])), "")
  const missed = ts.filter((t) => t.met === false).length
  out.push(`${ts.length - missed} of ${ts.length} targets met${missed > 0 ? `, ${missed} missed (what costs what: the "busy node" section of docs/bench/README.md)` : ""}.`, "")

  out.push("## Chain ADD and DEL per node state (median ms; p95 in brackets)", "")
  out.push(table(
    ["node state", "ADD per process", "ADD agent", "ADD reference", "DEL per process", "DEL agent", "DEL reference", "agent ÷ ref ADD / DEL (≤ 0.5)", "per process ÷ ref ADD (≤ 1.5) / DEL (≤ 1.0)"],
    a.states.map((s) => [
      s.label,
      ...(["add", "del"] as const).flatMap((verb) => VARIANT_IDS.map((id) => `${fmt(s[verb][id])} (${fmt(verb === "add" ? s.addP95[id] : s.delP95[id], 0)})`)),
      `${x(s.add.agent / s.add.reference)} / ${x(s.del.agent / s.del.reference)}`,
      `${x(s.add.process / s.add.reference)} / ${x(s.del.process / s.del.reference)}`
    ])
  ), "")
  out.push(`Samples per variant and state: ${[...new Set(a.states.flatMap((s) => VARIANT_IDS.map((id) => s.n[id])))].join(", ")}. Growth of ADD+DEL from the empty node to ${a.maxPods} pods + foreign rules: per process ${x(a.growth.process)}, agent ${x(a.growth.agent)}, reference ${x(a.growth.reference)}.`, "")

  const freshAgent = r.freshAgent ?? []
  if (freshAgent.length > 0 && a.empty !== undefined) {
    const addMs = median(freshAgent.map(add))
    const delMs = median(freshAgent.map(del))
    out.push(
      `**A freshly started agent.** The node states above are measured on an agent that first served ${r.agentWarmup ?? "?"} chains on the empty node: its JIT has compiled the code by then, as on a node whose agent has been up. Its first ${freshAgent.length} chains after starting, on the empty node: ADD ${fmt(addMs)} ms, DEL ${fmt(delMs)} ms (median; ${x(addMs / a.empty.add.reference)} / ${x(delMs / a.empty.del.reference)} of the reference's on the empty node; in order: ADD ${freshAgent.map((c) => fmt(add(c), 0)).join(", ")}).`,
      ""
    )
  }

  out.push("## CPU per chain (median ms, user + system)", "")
  out.push("Per process and reference: the plugin processes and the children they waited for (`wait4` rusage). Agent: the forwarding processes' rusage **plus** the agent's own CPU over each call (its threads' `/proc/<pid>/task/*/schedstat`), so the columns compare whole costs.", "")
  out.push(table(
    ["node state", "ADD per process", "ADD agent", "ADD reference", "DEL per process", "DEL agent", "DEL reference", "agent CPU over the state (utime+stime) ÷ calls served"],
    a.states.map((s) => [
      s.label,
      ...VARIANT_IDS.map((id) => fmt(s.addCpu[id])),
      ...VARIANT_IDS.map((id) => fmt(s.delCpu[id])),
      `${fmt(s.state.agent.cpuMs / Math.max(1, s.state.agent.calls))} ms (${s.state.agent.calls} calls, ${fmt(s.state.agent.cpuMs / 10 / s.state.wallS)} % of one core over ${fmt(s.state.wallS, 0)} s)`
    ])
  ), "")

  out.push("## Per call (median ms)", "")
  out.push(table(
    ["node state", "variant", "bridge ADD", "portmap ADD", "portmap DEL", "bridge DEL", "CPU: bridge ADD / portmap ADD / portmap DEL / bridge DEL"],
    a.states.flatMap((s) => VARIANT_IDS.map((id) => {
      const samples = s.state.samples[id]
      const med = (k: keyof CycleSample["ms"]) => median(samples.map((q) => q.ms[k]))
      const cpu = (k: keyof CycleSample["ms"]) => median(samples.map((q) => q.cpuMs[k] + q.agentCpuMs[k]))
      return [s.label, LABEL[id], fmt(med("bridgeAdd")), fmt(med("portmapAdd")), fmt(med("portmapDel")), fmt(med("bridgeDel")), CALL_KEYS.map((k) => fmt(cpu(k))).join(" / ")]
    }))
  ), "")

  if (r.bursts.length > 0) {
    out.push(`## Bursts: ${r.config.burstPods} pods' chain ADDs started at once, then their DELs at once`, "")
    out.push(`Wall time from the first spawn until the last chain ends (each pod: bridge then portmap; DEL: portmap then bridge). CPU: all the processes' rusage, plus the agent's utime + stime over the burst for the agent variant. A forwarding process that gets no \`ready\` from the agent within 2 s runs the call itself: such calls are counted by their CPU (> ${FALLBACK_CPU_MS} ms; a forwarded call costs its process ~6–10 ms, up to 24 under heavy load; one that ran itself ≥ 65, see scale-profile.md).`, "")
    out.push(table(
      ["node", "variant", "ADD wall ms", "DEL wall ms", "÷ reference ADD / DEL", "ADDs ok", "distinct IPs", "DELs ok", "one pod's chain inside the burst, median / max ms: ADD; DEL", "CPU ms ADD / DEL", "agent: calls that ran in their own process instead", "agent RSS after / peak during (MB)"],
      r.bursts.map((b) => {
        const ref = a.burst(b.at, "reference")
        return [
          b.at === "busy" ? `${b.pods} pods + foreign` : "empty",
          LABEL[b.variant],
          fmt(b.addWallMs, 0),
          fmt(b.delWallMs, 0),
          ref && b.variant !== "reference" ? `${x(b.addWallMs / ref.addWallMs)} / ${x(b.delWallMs / ref.delWallMs)}` : "–",
          `${b.addSucceeded}/${b.n}`,
          String(b.distinctIps),
          `${b.delSucceeded}/${b.n}`,
          `${fmt(median(b.addChainMs.filter(Number.isFinite)), 0)} / ${fmt(Math.max(...b.addChainMs.filter(Number.isFinite)), 0)}; ${fmt(median(b.delChainMs), 0)} / ${fmt(Math.max(...b.delChainMs), 0)}`,
          `${fmt(b.addCpuMs, 0)} / ${fmt(b.delCpuMs, 0)}`,
          b.variant === "agent" ? `${b.callCpuMs.filter((c) => c > FALLBACK_CPU_MS).length} of ${b.callCpuMs.length}` : "–",
          b.variant === "agent" ? `${fmt(b.agentRssMb)} / ${fmt(b.agentHwmMb)}` : "–"
        ]
      })
    ), "")
  }

  if (r.config.bursts.busy.length > 0 && !r.config.bursts.busy.includes("reference")) {
    out.push("The reference's burst on the busy node is not run by default: with 5,000 foreign iptables-nft rules its 100 concurrent portmap ADDs took 651 s in a trial run (`--busy-reference-burst` adds it, ~11 minutes).", "")
  }
  out.push("## The agent and the forwarding process", "")
  out.push(table(
    ["when", "agent VmRSS MB", "peak since the previous line (VmHWM, reset at each line and before each measured phase)", "threads", "agent CPU so far (s)"],
    r.snapshots.map((s) => [s.when, fmt(s.rssMb), fmt(s.hwmMb), String(s.threads), fmt(s.cpuMs / 1000, 2)])
  ), "")
  out.push("Per measured state (serial calls; the peak is VmHWM reset at the state's start):", "")
  out.push(table(
    ["node state", "agent RSS after MB", "agent peak during MB", "agent CPU ms per call served", "threads"],
    a.states.map((s) => [s.label, fmt(s.state.agent.rssMb), fmt(s.state.agent.hwmMb), fmt(s.state.agent.cpuMs / Math.max(1, s.state.agent.calls)), String(s.state.agent.threads)])
  ), "")
  out.push("Peak RSS of single calls (`/usr/bin/time -f %M`, one cycle per state, MB): through the agent this is the forwarding process (the multicall binary that hands the call over); per process, the whole call.", "")
  out.push(table(
    ["node state", "forwarding: bridge ADD / portmap ADD / portmap DEL / bridge DEL", "per process: the same"],
    a.states.map((s) => [s.label, s.state.forwardRssMb ? CALL_KEYS.map((k) => fmt(s.state.forwardRssMb![k])).join(" / ") : "–", s.state.processRssMb ? CALL_KEYS.map((k) => fmt(s.state.processRssMb![k])).join(" / ") : "–"])
  ), "")

  out.push("## Step traces (`TSCNI_LOG=debug`, one extra cycle per state, not in the medians)", "")
  out.push("Each call's wall ms, the sum of its traced steps and the largest steps (`step phase ms`; steps are logged in whole ms). The gap between wall and steps is process start, module loading, decoding, layers and exit (per process) or forwarding and the skel (agent).", "")
  out.push(table(
    ["node state", "variant", "call", "wall ms", "CPU ms", "steps ms", "largest steps"],
    a.states.flatMap((s) => s.state.steps.flatMap((t) => t.calls.map((c) => {
      const total = c.steps.reduce((sum, [, ms]) => sum + ms, 0)
      const top = [...c.steps].sort((p, q) => q[1] - p[1]).slice(0, 4).map(([name, ms]) => `${name} ${ms}`).join(", ")
      return [s.label, t.variant, c.call, fmt(c.ms), fmt(c.cpuMs), String(total), top]
    })))
  ), "")

  out.push("## Compared with the measurement that motivated issue #11 (per process, ADD / DEL ms)", "")
  out.push(table(
    ["node state then", "tscni then", "reference then", "node state now", "tscni per process now", "reference now", "agent now"],
    ORIGINAL.map((o) => {
      const now = a.states.find((s) => s.state.foreign === o.foreign && s.state.pods === o.pods) ?? a.states.filter((s) => s.state.foreign === o.foreign && s.state.pods >= o.pods)[0]
      return [
        o.label,
        `${o.tscni[0]} / ${o.tscni[1].toLocaleString("en")}`,
        `${o.reference[0]} / ${o.reference[1]}`,
        now ? now.label : "–",
        now ? `${fmt(now.add.process, 0)} / ${fmt(now.del.process, 0)}` : "–",
        now ? `${fmt(now.add.reference, 0)} / ${fmt(now.del.reference, 0)}` : "–",
        now ? `${fmt(now.add.agent, 0)} / ${fmt(now.del.agent, 0)}` : "–"
      ]
    })
  ), "")

  out.push("## The node in each state", "")
  out.push(table(
    ["node state", "links in the host namespace", "nft tables", "iptables nat chains", "iptables nat rules", "load average at the end (counts this bench's own bursts and pod creation too)"],
    a.states.map((s) => [s.label, String(s.state.census.links), String(s.state.census.nftTables), String(s.state.census.iptablesNatChains), String(s.state.census.iptablesNatRules), s.state.load])
  ), "")
  out.push(`Loading the foreign rules: ${r.foreignLoads.map((f) => `${f.what} ${fmt(f.ms, 0)} ms`).join(", ")}.`, "")
  out.push(`Failed calls: ${r.failures.length === 0 ? "none" : `${r.failures.length}: ${r.failures.slice(0, 10).map((f) => `\`${f.replace(/`/g, "'")}\``).join("; ")}`}`, "")
  out.push("![chain ADD and DEL per node state](scale.svg)", "")
  return out.join("\n")
}

// ---------------------------------------------------------------- the chart

const COLORS: Record<VariantId, string> = { process: "#60a5fa", agent: "#1d4ed8", reference: "#f59e0b" }
const esc = (text: string) => text.replace(/&/g, "&amp;").replace(/</g, "&lt;").replace(/>/g, "&gt;")

interface Group {
  readonly label: string
  readonly bars: ReadonlyArray<{ readonly id: VariantId; readonly value: number; readonly target?: number | undefined }>
}

/** One panel of grouped vertical bars, `height` px tall, at y; returns the SVG parts. */
const panel = (title: string, groups: ReadonlyArray<Group>, y: number, width: number, height: number): Array<string> => {
  const parts: Array<string> = []
  const left = 56
  const plotW = width - left - 16
  const top = y + 26
  const plotH = height - 26 - 34
  const values = groups.flatMap((g) => g.bars.flatMap((b) => [b.value, b.target ?? 0])).filter((v) => Number.isFinite(v))
  const max = Math.max(1, ...values) * 1.12
  const step = [1, 2, 5, 10, 20, 25, 50, 100, 200, 250, 500, 1000, 2000, 5000, 10000, 20000, 50000].find((s) => max / s <= 6) ?? 100000
  parts.push(`<text x="12" y="${y + 16}" class="h">${esc(title)}</text>`)
  for (let v = 0; v <= max; v += step) {
    const gy = top + plotH - (v / max) * plotH
    parts.push(`<line x1="${left}" y1="${gy.toFixed(1)}" x2="${width - 16}" y2="${gy.toFixed(1)}" class="g"/><text x="${left - 4}" y="${(gy + 3).toFixed(1)}" class="a" text-anchor="end">${v}</text>`)
  }
  const groupW = plotW / groups.length
  groups.forEach((g, gi) => {
    const gx = left + gi * groupW
    const barW = Math.min(34, (groupW - 14) / Math.max(1, g.bars.length))
    const start = gx + (groupW - barW * g.bars.length) / 2
    g.bars.forEach((b, bi) => {
      const bx = start + bi * barW
      if (!Number.isFinite(b.value)) return
      const h = (b.value / max) * plotH
      parts.push(`<rect x="${bx.toFixed(1)}" y="${(top + plotH - h).toFixed(1)}" width="${(barW - 3).toFixed(1)}" height="${h.toFixed(1)}" fill="${COLORS[b.id]}"/>`)
      if (b.target !== undefined && Number.isFinite(b.target)) {
        const ty = top + plotH - (b.target / max) * plotH
        parts.push(`<line x1="${(bx - 1).toFixed(1)}" y1="${ty.toFixed(1)}" x2="${(bx + barW - 2).toFixed(1)}" y2="${ty.toFixed(1)}" class="t"/>`)
      }
      parts.push(`<text x="${(bx + (barW - 3) / 2).toFixed(1)}" y="${(top + plotH - h - 3).toFixed(1)}" class="v" text-anchor="middle">${b.value >= 100 ? b.value.toFixed(0) : b.value.toFixed(1)}</text>`)
    })
    parts.push(`<text x="${(gx + groupW / 2).toFixed(1)}" y="${top + plotH + 14}" class="l" text-anchor="middle">${esc(g.label)}</text>`)
  })
  parts.push(`<line x1="${left}" y1="${top + plotH}" x2="${width - 16}" y2="${top + plotH}" class="ax"/>`)
  return parts
}

const svg = (r: ScaleResults, a: Analysis): string => {
  const width = 1000
  const panelH = 290
  const parts: Array<string> = []
  let y = 52
  for (const verb of ["ADD", "DEL"] as const) {
    const groups: Array<Group> = a.states.map((s) => {
      const v = verb === "ADD" ? s.add : s.del
      return {
        label: s.label,
        bars: [
          { id: "process", value: v.process, target: (verb === "ADD" ? 1.5 : 1.0) * v.reference },
          { id: "agent", value: v.agent, target: 0.5 * v.reference },
          { id: "reference", value: v.reference }
        ]
      }
    })
    parts.push(...panel(`Chain bridge → portmap ${verb}, median ms per pod (${r.config.iterations} iterations per state)`, groups, y, width, panelH))
    y += panelH
  }
  if (r.bursts.length > 0) {
    const groups: Array<Group> = (["empty", "busy"] as const).filter((at) => r.config.bursts[at].length > 0).flatMap((at) => (["ADD", "DEL"] as const).map((verb) => {
      const ref = a.burst(at, "reference")
      const wall = (id: VariantId) => {
        const b = a.burst(at, id)
        return b ? (verb === "ADD" ? b.addWallMs : b.delWallMs) : Number.NaN
      }
      const refWall = ref ? (verb === "ADD" ? ref.addWallMs : ref.delWallMs) : Number.NaN
      const pods = a.burst(at, "agent")?.pods ?? 0
      return {
        label: `${r.config.burstPods} × ${verb}, ${at === "busy" ? `${pods} pods + foreign` : "empty node"}`,
        bars: VARIANT_IDS.filter((id) => r.config.bursts[at].includes(id)).map((id) => ({ id, value: id === "reference" ? refWall : wall(id), ...(id === "agent" ? { target: 0.5 * refWall } : {}) }))
      }
    }))
    const missing = r.config.bursts.busy.length > 0 && !r.config.bursts.busy.includes("reference") ? " (busy node: the reference not run, see scale.md)" : ""
    parts.push(...panel(`Bursts: ${r.config.burstPods} chains at once, wall ms until the last ends${missing}`, groups, y, width, panelH))
    y += panelH
  }
  const legend = VARIANT_IDS.map((id, i) => `<rect x="${12 + i * 210}" y="30" width="12" height="12" fill="${COLORS[id]}"/><text x="${28 + i * 210}" y="40" class="l">${LABEL[id]}</text>`).join("")
  const height = y + 12
  return [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}" viewBox="0 0 ${width} ${height}" font-family="sans-serif">`,
    "<style>.h{font-size:14px;font-weight:bold}.l{font-size:11px}.a{font-size:10px;fill:#555}.v{font-size:9px;fill:#222;paint-order:stroke;stroke:#fff;stroke-width:3px}.g{stroke:#e5e7eb;stroke-width:1}.ax{stroke:#333;stroke-width:1}.t{stroke:#dc2626;stroke-width:2;stroke-dasharray:3 2}.s{font-size:11px;fill:#555}</style>",
    `<rect width="100%" height="100%" fill="#fff"/>`,
    `<text x="12" y="20" class="h">The busy node: tscni per process, through the agent, and the reference CNI plugins</text>`,
    `<text x="${width - 12}" y="20" class="s" text-anchor="end">${esc(`${r.machine.date.slice(0, 16).replace("T", " ")} UTC, ${r.machine.cpus} cores${r.quick ? ", --quick" : ""}`)}</text>`,
    legend,
    `<line x1="650" y1="36" x2="670" y2="36" class="t"/><text x="676" y="40" class="l">target (agent 0.5× ref; per process 1.5× ADD, 1.0× DEL)</text>`,
    ...parts,
    "</svg>",
    ""
  ].join("\n")
}

/** Writes scale.md, scale.svg and scale.json into `dir`. */
export const writeScaleReport = (r: ScaleResults, dir: string): void => {
  mkdirSync(dir, { recursive: true })
  const a = analyse(r)
  writeFileSync(join(dir, "scale.md"), markdown(r, a))
  writeFileSync(join(dir, "scale.svg"), svg(r, a))
  writeFileSync(join(dir, "scale.json"), JSON.stringify(r, null, 1))
}
