/**
 * Turns one bench run into docs/bench/results.md (tables: medians, p95, tscni ÷ reference,
 * the target and whether it is met), results.svg (bars, hand-written SVG) and
 * results.json (every sample, for later analysis).
 */
import { mkdirSync, writeFileSync } from "node:fs"
import { join } from "node:path"
import type { ChainOutcome, ChainPlugin, ConcurrentRun, Failure, MemoryOutcome, SerialOutcome, SerialSample } from "./lib.ts"
import { median, percentile } from "./lib.ts"

export interface SizeRow {
  readonly what: string
  readonly bytes: number
  readonly files: number
}

export interface BenchResults {
  readonly machine: { date: string; cpus: number; cpuModel: string; kernel: string; bun: string; reference: string; load: string }
  readonly loadAfter: string
  readonly quick: boolean
  readonly config: Record<string, number>
  readonly builtAt: Record<string, string>
  readonly multicallPlugins: ReadonlyArray<string>
  readonly chain: ReadonlyArray<ChainPlugin>
  readonly chainNote: string
  /** per plugin: samples per variant id (tscni, multicall, reference, bare) */
  readonly version: Record<string, { samples: Record<string, Array<number>>; failures: Array<string> }>
  readonly serial: SerialOutcome
  readonly chainOutcome: ChainOutcome
  readonly concurrent: ReadonlyArray<ConcurrentRun>
  readonly memory: MemoryOutcome
  readonly sizes: ReadonlyArray<SizeRow>
  readonly durationS: number
}

interface Stat {
  readonly median: number
  readonly p95: number
  readonly n: number
}

const stat = (samples: ReadonlyArray<number> | undefined): Stat | undefined =>
  samples === undefined || samples.length === 0 ? undefined : { median: median(samples), p95: percentile(samples, 0.95), n: samples.length }

/** One line of the summary: a measure, tscni against the reference, and its target. */
interface Row {
  readonly measure: string
  readonly unit: string
  readonly tscni: Stat | undefined
  readonly reference: Stat | undefined
  readonly target: string
  readonly met: boolean | undefined
}

const fmt = (value: number | undefined, digits = 1): string => (value === undefined || Number.isNaN(value) ? "–" : value.toFixed(digits))
const ratio = (a: Stat | undefined, b: Stat | undefined): number | undefined => (a && b ? a.median / b.median : undefined)
const mark = (met: boolean | undefined): string => (met === undefined ? "–" : met ? "yes" : "**no**")

const perPod = (samples: ReadonlyArray<SerialSample>, pick: (s: SerialSample) => number) => samples.map(pick)

/** Per-pod totals of the chain, when every plugin ran for every pod (else undefined). */
const chainTotals = (perPlugin: Record<string, Array<number>> | undefined, chain: ReadonlyArray<string>): Array<number> | undefined => {
  if (perPlugin === undefined) return undefined
  const lists = chain.map((type) => perPlugin[type] ?? [])
  const n = lists[0]?.length ?? 0
  if (n === 0 || lists.some((list) => list.length !== n)) return undefined
  return Array.from({ length: n }, (_, i) => lists.reduce((sum, list) => sum + list[i]!, 0))
}

const mb = (kb: ReadonlyArray<number> | undefined) => kb?.map((k) => k / 1024)

/** Every number of a run, organised once for both the markdown and the chart. */
const analyse = (r: BenchResults) => {
  const version = Object.entries(r.version).map(([plugin, v]) => ({
    plugin,
    tscni: stat(v.samples.tscni),
    multicall: stat(v.samples.multicall),
    reference: stat(v.samples.reference),
    bare: stat(v.samples.bare),
    empty: stat(v.samples.empty),
    failures: v.failures
  }))
  type Times = Omit<SerialSample, "cpu">
  const serialMeasures = [
    { key: "bridge + host-local ADD", verb: "ADD", pick: (s: Times) => s.bridgeAdd },
    { key: "bridge + host-local DEL", verb: "DEL", pick: (s: Times) => s.bridgeDel },
    { key: "loopback ADD", verb: "ADD", pick: (s: Times) => s.loopbackAdd },
    { key: "loopback DEL", verb: "DEL", pick: (s: Times) => s.loopbackDel },
    { key: "pod ADD (loopback + bridge + host-local)", verb: "ADD", pick: (s: Times) => s.loopbackAdd + s.bridgeAdd },
    { key: "pod DEL (bridge + host-local + loopback)", verb: "DEL", pick: (s: Times) => s.bridgeDel + s.loopbackDel }
  ] as const
  const serial = serialMeasures.map((m) => ({
    measure: m.key,
    verb: m.verb,
    tscni: stat(perPod(r.serial.samples.tscni ?? [], m.pick)),
    multicall: stat(r.serial.samples.multicall ? perPod(r.serial.samples.multicall, m.pick) : undefined),
    reference: stat(perPod(r.serial.samples.reference ?? [], m.pick)),
    cpu: {
      tscni: stat(perPod(r.serial.samples.tscni ?? [], (s) => m.pick(s.cpu))),
      multicall: stat(r.serial.samples.multicall ? perPod(r.serial.samples.multicall, (s) => m.pick(s.cpu)) : undefined),
      reference: stat(perPod(r.serial.samples.reference ?? [], (s) => m.pick(s.cpu)))
    }
  }))
  const chainName = r.chain.join(" → ")
  const chainRows = (["ADD", "DEL"] as const).map((verb) => {
    const source = verb === "ADD" ? r.chainOutcome.add : r.chainOutcome.del
    const cpu = (verb === "ADD" ? r.chainOutcome.addCpu : r.chainOutcome.delCpu) ?? {}
    return {
      measure: `chain ${chainName} ${verb}`,
      verb,
      tscni: stat(chainTotals(source.tscni, r.chain)),
      reference: stat(chainTotals(source.reference, r.chain)),
      cpu: { tscni: stat(chainTotals(cpu.tscni, r.chain)), reference: stat(chainTotals(cpu.reference, r.chain)) },
      plugins: r.chain.map((type) => ({
        type,
        tscni: stat(source.tscni?.[type]),
        reference: stat(source.reference?.[type]),
        cpu: { tscni: stat(cpu.tscni?.[type]), reference: stat(cpu.reference?.[type]) }
      }))
    }
  })
  const concurrent = (["ADD", "DEL"] as const).map((verb) => {
    const of = (id: string) => r.concurrent.filter((c) => c.variant === id)
    const wall = (id: string) => of(id).map((c) => (verb === "ADD" ? c.addWallMs : c.delWallMs))
    return { verb, tscni: stat(wall("tscni")), reference: stat(wall("reference")), runs: r.concurrent }
  })
  const memoryKeys = [...new Set(["tscni", "multicall", "reference"].flatMap((id) => Object.keys(r.memory.peakKb[id] ?? {})))]
  const memory = memoryKeys.map((key) => ({
    key,
    tscni: stat(mb(r.memory.peakKb.tscni?.[key])),
    multicall: stat(mb(r.memory.peakKb.multicall?.[key])),
    reference: stat(mb(r.memory.peakKb.reference?.[key]))
  }))
  const bareMemory = stat(mb(r.memory.peakKb.bare?.VERSION))
  const emptyMemory = stat(mb(r.memory.peakKb.empty?.VERSION))
  return { version, serial, chainRows, concurrent, memory, bareMemory, emptyMemory }
}

const summaryRows = (r: BenchResults, a: ReturnType<typeof analyse>): Array<Row> => {
  const rows: Array<Row> = []
  for (const v of a.version) {
    const limit = v.bare ? 1.3 * v.bare.median : undefined
    const target = `≤ 1.3 × bare Bun (${fmt(v.bare?.median)} ms) = ${fmt(limit)} ms`
    rows.push({ measure: `VERSION ${v.plugin}`, unit: "ms", tscni: v.tscni, reference: v.reference, target, met: v.tscni && limit ? v.tscni.median <= limit : undefined })
    if (v.multicall) {
      rows.push({ measure: `VERSION ${v.plugin} (multicall link)`, unit: "ms", tscni: v.multicall, reference: v.reference, target, met: limit ? v.multicall.median <= limit : undefined })
    }
  }
  const verbTarget = (verb: "ADD" | "DEL") => (verb === "ADD" ? 0.7 : 0.5)
  for (const s of a.serial) {
    const t = verbTarget(s.verb)
    const met = (x: Stat | undefined) => (x && s.reference ? x.median <= t * s.reference.median : undefined)
    rows.push({ measure: `${s.measure}, serial`, unit: "ms", tscni: s.tscni, reference: s.reference, target: `≤ ${t} × reference`, met: met(s.tscni) })
    if (s.multicall) rows.push({ measure: `${s.measure}, serial (multicall)`, unit: "ms", tscni: s.multicall, reference: s.reference, target: `≤ ${t} × reference`, met: met(s.multicall) })
  }
  for (const c of a.chainRows) {
    const t = verbTarget(c.verb)
    rows.push({ measure: c.measure, unit: "ms", tscni: c.tscni, reference: c.reference, target: `≤ ${t} × reference`, met: c.tscni && c.reference ? c.tscni.median <= t * c.reference.median : undefined })
  }
  for (const c of a.concurrent) {
    const distinct = r.concurrent.filter((run) => run.variant === "tscni").every((run) => run.distinctIps === r.config.concurrentPods && run.succeeded === r.config.concurrentPods)
    const label = `${r.config.concurrentPods} concurrent ${c.verb}s, wall${c.verb === "ADD" ? ` (all IPs distinct: ${distinct ? "yes" : "NO"})` : ""}`
    rows.push({ measure: label, unit: "ms", tscni: c.tscni, reference: c.reference, target: "≤ 1.0 × reference", met: c.tscni && c.reference ? c.tscni.median <= c.reference.median && (c.verb === "DEL" || distinct) : undefined })
  }
  for (const m of a.memory) {
    if (!/ADD$/.test(m.key) && m.key !== "bridge VERSION") continue
    rows.push({ measure: `peak RSS, ${m.key}`, unit: "MB", tscni: m.tscni, reference: m.reference, target: "≤ 30 MB", met: m.tscni ? m.tscni.p95 <= 30 : undefined })
  }
  return rows
}

const table = (header: ReadonlyArray<string>, rows: ReadonlyArray<ReadonlyArray<string>>): string =>
  [`| ${header.join(" | ")} |`, `|${header.map(() => "---").join("|")}|`, ...rows.map((row) => `| ${row.join(" | ")} |`)].join("\n")

const failureList = (failures: ReadonlyArray<Failure>): string =>
  failures.length === 0 ? "none" : failures.slice(0, 10).map((f) => `\`${f.what}\` (exit ${f.exitCode}): ${f.output.replace(/\s+/g, " ").slice(0, 200)}`).join("<br>") + (failures.length > 10 ? `<br>… ${failures.length - 10} more` : "")

const markdown = (r: BenchResults, a: ReturnType<typeof analyse>): string => {
  const m = r.machine
  const rows = summaryRows(r, a)
  const out: Array<string> = []
  out.push("# tscni benchmark results", "")
  out.push(`Written by \`bun run bench${r.quick ? " --quick" : ""}\` (tests/bench/run.ts) on ${m.date}: ${m.cpus} × ${m.cpuModel}, Linux ${m.kernel}, Bun ${m.bun}, reference plugins ${m.reference} (Debian). Load average before / after: ${m.load.split(" ").slice(0, 3).join(" ")} / ${r.loadAfter.split(" ").slice(0, 3).join(" ")}. Whole run: ${r.durationS.toFixed(0)} s.`, "")
  out.push(`tscni binaries: dist/bin as built at ${Object.values(r.builtAt).sort().at(-1)}, copied before the run. Multicall links answered as: ${r.multicallPlugins.join(", ") || "none"}. Chain: ${r.chainNote.split("\n")[0]}`, "")
  out.push("Times are wall-clock milliseconds from spawn to exit of one plugin process, as a runtime sees them (several processes when a plugin delegates: bridge execs host-local). Variants alternate on every iteration. Ratio = tscni median ÷ reference median (lower is better). See README.md for what each number means.", "")
  out.push("## Targets at a glance", "")
  out.push(table(
    ["measure", "tscni median", "tscni p95", "reference median", "reference p95", "tscni ÷ reference", "target", "met"],
    rows.map((row) => [
      row.measure,
      `${fmt(row.tscni?.median)} ${row.unit}`,
      `${fmt(row.tscni?.p95)} ${row.unit}`,
      `${fmt(row.reference?.median)} ${row.unit}`,
      `${fmt(row.reference?.p95)} ${row.unit}`,
      `${fmt(ratio(row.tscni, row.reference), 2)}×`,
      row.target,
      mark(row.met)
    ])
  ), "")
  out.push("(`multicall` rows: the same measure with tscni installed as one `tscni` binary plus symlinks; their tscni columns are the multicall's.)", "")

  out.push(`## VERSION (process start to exit), ${r.config.versionRuns} runs per variant`, "")
  out.push(table(
    ["plugin", "tscni per-plugin", "tscni multicall", "reference", "bare Bun (prints stdin)", "empty Bun program", "tscni ÷ bare", "tscni ÷ reference"],
    a.version.map((v) => [
      v.plugin,
      `${fmt(v.tscni?.median)} (p95 ${fmt(v.tscni?.p95)})`,
      v.multicall ? `${fmt(v.multicall.median)} (p95 ${fmt(v.multicall.p95)})` : "not linked",
      `${fmt(v.reference?.median)} (p95 ${fmt(v.reference?.p95)})`,
      `${fmt(v.bare?.median)} (p95 ${fmt(v.bare?.p95)})`,
      `${fmt(v.empty?.median)} (p95 ${fmt(v.empty?.p95)})`,
      `${fmt(ratio(v.tscni, v.bare), 2)}×`,
      `${fmt(ratio(v.tscni, v.reference), 2)}×`
    ])
  ), "")
  const versionFailures = a.version.flatMap((v) => v.failures)
  if (versionFailures.length > 0) out.push(`Failures: ${versionFailures.slice(0, 5).join("; ")}`, "")

  out.push(`## Serial ADD and DEL, ${r.config.serialPods} pods per variant (ms)`, "")
  out.push(table(
    ["measure", "tscni", "tscni multicall", "reference", "tscni ÷ reference", "multicall ÷ reference"],
    a.serial.map((s) => [
      s.measure,
      `${fmt(s.tscni?.median)} (p95 ${fmt(s.tscni?.p95)})`,
      s.multicall ? `${fmt(s.multicall.median)} (p95 ${fmt(s.multicall.p95)})` : "–",
      `${fmt(s.reference?.median)} (p95 ${fmt(s.reference?.p95)})`,
      `${fmt(ratio(s.tscni, s.reference), 2)}×`,
      `${fmt(ratio(s.multicall, s.reference), 2)}×`
    ])
  ), "")
  out.push(`Failed execs: ${failureList(r.serial.failures)}`, "")
  out.push("CPU time of the same invocations (user + system ms, the process and the children it waited for; hardly moved by machine load, unlike wall time):", "")
  out.push(table(
    ["measure", "tscni CPU", "multicall CPU", "reference CPU", "tscni ÷ reference"],
    a.serial.map((s) => [s.measure, fmt(s.cpu.tscni?.median), fmt(s.cpu.multicall?.median), fmt(s.cpu.reference?.median), `${fmt(ratio(s.cpu.tscni, s.cpu.reference), 2)}×`])
  ), "")

  out.push(`## Chain ${r.chain.join(" → ")}, ${r.config.chainPods} pods per variant (ms)`, "")
  if (r.chain.length < 4) out.push(`**Not the full chain.** ${r.chainNote.replace(/\n/g, "<br>")}`, "")
  out.push(table(
    ["verb", "plugin", "tscni", "reference", "tscni ÷ reference", "tscni CPU", "reference CPU"],
    a.chainRows.flatMap((c) => [
      ...c.plugins.map((p) => [c.verb, p.type, `${fmt(p.tscni?.median)} (p95 ${fmt(p.tscni?.p95)})`, `${fmt(p.reference?.median)} (p95 ${fmt(p.reference?.p95)})`, `${fmt(ratio(p.tscni, p.reference), 2)}×`, fmt(p.cpu.tscni?.median), fmt(p.cpu.reference?.median)]),
      [c.verb, "**whole chain**", `**${fmt(c.tscni?.median)}** (p95 ${fmt(c.tscni?.p95)})`, `**${fmt(c.reference?.median)}** (p95 ${fmt(c.reference?.p95)})`, `**${fmt(ratio(c.tscni, c.reference), 2)}×**`, fmt(c.cpu.tscni?.median), fmt(c.cpu.reference?.median)]
    ])
  ), "")
  out.push(`Failed execs: ${failureList(r.chainOutcome.failures)}`, "")

  out.push(`## ${r.config.concurrentPods} concurrent ADDs, then ${r.config.concurrentPods} concurrent DELs, one network (bridge + host-local)`, "")
  out.push(table(
    ["round", "variant", "ADD wall ms", "DEL wall ms", "ADD CPU ms (all 40)", "DEL CPU ms (all 40)", "ADDs that succeeded", "distinct IPs", "failures"],
    r.concurrent.map((c) => [String(c.round + 1), c.variant, fmt(c.addWallMs), fmt(c.delWallMs), fmt(c.addCpuMs), fmt(c.delCpuMs), `${c.succeeded}/${r.config.concurrentPods}`, String(c.distinctIps), failureList(c.failures)])
  ), "")

  out.push(`## Peak resident memory per invocation (MB, from \`/usr/bin/time -f %M\`), ${r.config.memoryPods} run(s) each`, "")
  out.push(table(
    ["invocation", "tscni median", "tscni max", "tscni multicall median", "reference median", "reference max"],
    a.memory.map((x) => [x.key, fmt(x.tscni?.median), fmt(x.tscni ? x.tscni.p95 : undefined), fmt(x.multicall?.median), fmt(x.reference?.median), fmt(x.reference?.p95)])
  ), "")
  out.push(`Bare Bun program printing its stdin: ${fmt(a.bareMemory?.median)} MB; empty compiled Bun program: ${fmt(a.emptyMemory?.median)} MB (the floor of any compiled Bun binary). A process's figure includes the processes it waits for (bridge's includes the host-local it execs, as their maximum, not their sum). Failed: ${failureList(r.memory.failures)}`, "")

  out.push("## Installed size", "")
  const refNode = r.sizes[2]?.bytes ?? 0
  out.push(table(
    ["what", "files", "MiB", "÷ reference (same plugins)"],
    r.sizes.map((s) => [s.what, String(s.files), fmt(s.bytes / 1048576), refNode > 0 ? `${fmt(s.bytes / refNode, 2)}×` : "–"])
  ), "")
  out.push("![results](results.svg)", "")
  return out.join("\n")
}

// ---------------------------------------------------------------- the chart

const COLORS: Record<string, string> = { tscni: "#2563eb", multicall: "#60a5fa", reference: "#f59e0b", bare: "#9ca3af", size: "#6b7280" }
const esc = (text: string) => text.replace(/&/g, "&amp;").replace(/</g, "&lt;").replace(/>/g, "&gt;")

interface ChartRow {
  readonly label: string
  readonly bars: ReadonlyArray<{ readonly id: string; readonly value: number | undefined }>
  readonly target?: number | undefined
}
interface ChartSection {
  readonly title: string
  readonly unit: string
  readonly rows: ReadonlyArray<ChartRow>
}

const svg = (sections: ReadonlyArray<ChartSection>, subtitle: string): string => {
  const width = 960
  const labelW = 300
  const barMax = width - labelW - 110
  const barH = 13
  const parts: Array<string> = []
  let y = 56
  for (const section of sections) {
    y += 24
    parts.push(`<text x="12" y="${y}" class="h">${esc(section.title)}</text>`)
    y += 10
    const max = Math.max(...section.rows.flatMap((row) => [...row.bars.map((b) => b.value ?? 0), row.target ?? 0]), 1e-9)
    for (const row of section.rows) {
      const present = row.bars.filter((b) => b.value !== undefined)
      const rowH = present.length * (barH + 2) + 8
      parts.push(`<text x="${labelW - 8}" y="${y + rowH / 2 + 2}" class="l" text-anchor="end">${esc(row.label)}</text>`)
      present.forEach((bar, i) => {
        const w = Math.max(1, (bar.value! / max) * barMax)
        const by = y + 4 + i * (barH + 2)
        parts.push(`<rect x="${labelW}" y="${by}" width="${w.toFixed(1)}" height="${barH}" fill="${COLORS[bar.id] ?? "#333"}"/>`)
        parts.push(`<text x="${labelW + w + 4}" y="${by + barH - 2}" class="v">${bar.value!.toFixed(1)} ${esc(section.unit)}</text>`)
      })
      if (row.target !== undefined) {
        const x = labelW + (row.target / max) * barMax
        parts.push(`<line x1="${x.toFixed(1)}" y1="${y + 1}" x2="${x.toFixed(1)}" y2="${y + rowH - 3}" class="t"/>`)
      }
      y += rowH
    }
  }
  const legend = [["tscni", "tscni (per-plugin binaries)"], ["multicall", "tscni multicall"], ["reference", "reference (Go)"], ["bare", "bare compiled Bun"]]
    .map(([id, label], i) => `<rect x="${12 + i * 200}" y="32" width="12" height="12" fill="${COLORS[id!]}"/><text x="${28 + i * 200}" y="42" class="l">${label}</text>`)
    .join("")
  const height = y + 24
  return [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}" viewBox="0 0 ${width} ${height}" font-family="sans-serif">`,
    `<style>.h{font-size:14px;font-weight:bold}.l{font-size:11px}.v{font-size:10px;fill:#333}.t{stroke:#dc2626;stroke-width:2;stroke-dasharray:3 2}.s{font-size:11px;fill:#555}</style>`,
    `<rect width="100%" height="100%" fill="#fff"/>`,
    `<text x="12" y="20" class="h">tscni vs reference CNI plugins (medians; red dashes: target)</text>`,
    `<text x="${width - 12}" y="20" class="s" text-anchor="end">${esc(subtitle)}</text>`,
    legend,
    `<line x1="812" y1="32" x2="812" y2="44" class="t"/><text x="818" y="42" class="l">target</text>`,
    ...parts,
    "</svg>",
    ""
  ].join("\n")
}

const chartSections = (r: BenchResults, a: ReturnType<typeof analyse>): Array<ChartSection> => [
  {
    title: "VERSION: process start to exit (ms)",
    unit: "ms",
    rows: a.version.map((v) => ({
      label: v.plugin,
      bars: [{ id: "tscni", value: v.tscni?.median }, { id: "multicall", value: v.multicall?.median }, { id: "reference", value: v.reference?.median }, { id: "bare", value: v.bare?.median }],
      target: v.bare ? 1.3 * v.bare.median : undefined
    }))
  },
  {
    title: `Serial, per pod (ms), ${r.config.serialPods} pods`,
    unit: "ms",
    rows: a.serial.map((s) => ({
      label: s.measure,
      bars: [{ id: "tscni", value: s.tscni?.median }, { id: "multicall", value: s.multicall?.median }, { id: "reference", value: s.reference?.median }],
      target: s.reference ? (s.verb === "ADD" ? 0.7 : 0.5) * s.reference.median : undefined
    }))
  },
  {
    title: `Chain ${r.chain.join(" → ")}, per pod (ms)`,
    unit: "ms",
    rows: a.chainRows.map((c) => ({
      label: `${c.verb} (whole chain)`,
      bars: [{ id: "tscni", value: c.tscni?.median }, { id: "reference", value: c.reference?.median }],
      target: c.reference ? (c.verb === "ADD" ? 0.7 : 0.5) * c.reference.median : undefined
    }))
  },
  {
    title: `${r.config.concurrentPods} concurrent invocations, wall time (ms)`,
    unit: "ms",
    rows: a.concurrent.map((c) => ({
      label: `${r.config.concurrentPods} × ${c.verb}`,
      bars: [{ id: "tscni", value: c.tscni?.median }, { id: "reference", value: c.reference?.median }],
      target: c.reference?.median
    }))
  },
  {
    title: "Peak resident memory per invocation (MB)",
    unit: "MB",
    rows: a.memory.filter((m) => /ADD$/.test(m.key) || m.key === "bridge VERSION").map((m) => ({
      label: m.key,
      bars: [{ id: "tscni", value: m.tscni?.median }, { id: "multicall", value: m.multicall?.median }, { id: "reference", value: m.reference?.median }],
      target: 30
    })).concat([{
      label: "Bun floor: bare / empty program",
      bars: [{ id: "bare", value: a.bareMemory?.median }, { id: "bare", value: a.emptyMemory?.median }],
      target: 30
    }])
  },
  {
    title: "Installed size (MiB)",
    unit: "MiB",
    rows: r.sizes.slice(0, 3).map((s, i) => ({
      label: ["tscni per-plugin binaries", "tscni multicall + links", "reference, same plugins"][i]!,
      bars: [{ id: ["tscni", "multicall", "reference"][i]!, value: s.bytes / 1048576 }]
    }))
  }
]

/** Writes results.md, results.svg and results.json into `dir`. */
export const writeReport = (r: BenchResults, dir: string): void => {
  mkdirSync(dir, { recursive: true })
  const a = analyse(r)
  writeFileSync(join(dir, "results.md"), markdown(r, a))
  writeFileSync(join(dir, "results.svg"), svg(chartSections(r, a), `${r.machine.date.slice(0, 10)}, ${r.machine.cpus} cores${r.quick ? ", --quick" : ""}`))
  writeFileSync(join(dir, "results.json"), JSON.stringify(r, null, 1))
}
