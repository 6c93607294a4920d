/**
 * Micro-benchmark: the cost of one kernel operation through LinuxBackend (a netlink
 * request on a namespace-bound socket) against the same operation done by spawning `ip`,
 * as runtimes' shell-outs and older plugins do. Run as root:
 *   bun tests/bench/backend-ops.ts [iterations]
 * Prints medians, p95 and the ratio; writes docs/bench/backend-ops.md.
 */
import { mkdirSync, writeFileSync } from "node:fs"
import { resolve } from "node:path"
import { Effect } from "effect"
import { makeLinuxBackend } from "@tscni/backend-linux"

const iterations = Number(process.argv[2] ?? 200)
const backend = makeLinuxBackend()
const name = `tscni-bench-${process.pid}`
const ns = Effect.runSync(backend.createNetns(name))

const run = <A, E>(effect: Effect.Effect<A, E>) => Effect.runSync(effect)
const ip = (...args: Array<string>) => {
  const out = Bun.spawnSync(["ip", "-n", name, ...args], { stderr: "pipe" })
  if (out.exitCode !== 0) throw new Error(`ip ${args.join(" ")}: ${out.stderr.toString()}`)
}

const percentile = (sorted: Array<number>, p: number) => sorted[Math.min(sorted.length - 1, Math.floor(p * sorted.length))]!

/** Alternates the two variants so machine noise hits both alike. */
const compare = (label: string, ours: () => void, theirs: () => void) => {
  const a: Array<number> = []
  const b: Array<number> = []
  for (let i = 0; i < iterations; i++) {
    let start = Bun.nanoseconds()
    ours()
    a.push((Bun.nanoseconds() - start) / 1e6)
    start = Bun.nanoseconds()
    theirs()
    b.push((Bun.nanoseconds() - start) / 1e6)
  }
  a.sort((x, y) => x - y)
  b.sort((x, y) => x - y)
  const row = {
    label,
    oursMedian: percentile(a, 0.5),
    oursP95: percentile(a, 0.95),
    ipMedian: percentile(b, 0.5),
    ipP95: percentile(b, 0.95)
  }
  return { ...row, ratio: row.oursMedian / row.ipMedian }
}

try {
  run(backend.createVeth({ netns: ns, name: "vb0", peerNetns: ns, peerName: "vb1" }))
  const rows = [
    compare(
      "create + delete a veth pair",
      () => {
        run(backend.createVeth({ netns: ns, name: "va0", peerNetns: ns, peerName: "va1" }))
        run(backend.deleteLink(ns, "va0"))
      },
      () => {
        ip("link", "add", "va0", "type", "veth", "peer", "name", "va1")
        ip("link", "del", "va0")
      }
    ),
    compare(
      "add + delete an address",
      () => {
        run(backend.addAddress(ns, "vb0", "10.123.0.2/24"))
        run(backend.deleteAddress(ns, "vb0", "10.123.0.2/24"))
      },
      () => {
        ip("addr", "add", "10.123.0.2/24", "dev", "vb0")
        ip("addr", "del", "10.123.0.2/24", "dev", "vb0")
      }
    ),
    compare("set a link up + down", () => {
      run(backend.setLink(ns, "vb0", { up: true }))
      run(backend.setLink(ns, "vb0", { up: false }))
    }, () => {
      ip("link", "set", "vb0", "up")
      ip("link", "set", "vb0", "down")
    })
  ]
  const fmt = (ms: number) => ms.toFixed(3)
  const table = [
    `| operation (${iterations} runs each, alternating) | LinuxBackend median ms | p95 | spawning ip median ms | p95 | ratio |`,
    "|---|---|---|---|---|---|",
    ...rows.map((r) => `| ${r.label} | ${fmt(r.oursMedian)} | ${fmt(r.oursP95)} | ${fmt(r.ipMedian)} | ${fmt(r.ipP95)} | ${r.ratio.toFixed(3)} |`)
  ].join("\n")
  console.log(table)
  const outDir = resolve(import.meta.dir, "..", "..", "docs", "bench")
  mkdirSync(outDir, { recursive: true })
  writeFileSync(
    resolve(outDir, "backend-ops.md"),
    `# Kernel operation cost: LinuxBackend vs spawning ip\n\nMeasured by \`bun tests/bench/backend-ops.ts ${iterations}\` on ${new Date().toISOString().slice(0, 10)} (${process.arch}, ${navigator.hardwareConcurrency} cores). Ratio = LinuxBackend median / ip median (lower is better).\n\n${table}\n`
  )
} finally {
  Effect.runSync(backend.deleteNetns(ns))
}
