/**
 * RunPodSandbox and StopPodSandbox through containerd's CRI (issue #14), timed as kubelet
 * would see them: `bun tests/bench/containerd.ts [N]` (root; N sandboxes per variant,
 * default 20; ~2 minutes). Writes docs/bench/containerd.{md,json}.
 *
 * Three variants, each its own containerd (tests/e2e/containerd/harness.ts: Debian's
 * containerd 1.6 with runc in a node namespace, private everything) with the same conflist
 * (bridge + host-local, portmap, bandwidth): tscni per process, tscni with `tscni agent`
 * serving the calls, and Debian's reference plugins. Sandboxes are made one at a time,
 * the variants alternating (A B C, B C A, …); RunPodSandbox → ready is the call's wall
 * time (containerd returns once the sandbox runs and its network is set up), then
 * StopPodSandbox's, then RemovePodSandbox (untimed). Medians.
 */
import { readFileSync, writeFileSync } from "node:fs"
import { join, resolve } from "node:path"
import { type ContainerdNode, sandboxConfig, startNode } from "../e2e/containerd/harness.ts"

const OUT_DIR = resolve(import.meta.dir, "..", "..", "docs", "bench")
const count = Number(process.argv[2] ?? 20)
const log = (line: string) => process.stderr.write(`[containerd bench] ${line}\n`)
const median = (values: ReadonlyArray<number>): number => {
  const sorted = [...values].sort((a, b) => a - b)
  const mid = Math.floor(sorted.length / 2)
  return sorted.length % 2 === 1 ? sorted[mid]! : (sorted[mid - 1]! + sorted[mid]!) / 2
}
const round = (value: number) => Number(value.toFixed(1))

interface Variant {
  readonly name: string
  readonly node: ContainerdNode
  readonly run: Array<number>
  readonly stop: Array<number>
}

const main = async () => {
  if (process.getuid?.() !== 0) throw new Error("the containerd bench needs root")
  const began = Date.now()
  const variants: Array<Variant> = []
  try {
    for (const [name, options] of [
      ["tscni per process", { recorder: false }],
      ["tscni through the agent", { recorder: false, withAgent: true }],
      ["reference plugins", { recorder: false, reference: true }]
    ] as const) {
      variants.push({ name, node: await startNode(options), run: [], stop: [] })
    }
    // one warm-up sandbox each, not counted
    for (let i = -1; i < count; i++) {
      for (let k = 0; k < variants.length; k++) {
        const variant = variants[(i + 1 + k) % variants.length]!
        const started = performance.now()
        const { podSandboxId } = await variant.node.cri.call("runPodSandbox", { config: sandboxConfig(`bench-${i + 1}`) })
        const ready = performance.now()
        await variant.node.cri.call("stopPodSandbox", { podSandboxId })
        const stopped = performance.now()
        await variant.node.cri.call("removePodSandbox", { podSandboxId })
        if (i >= 0) {
          variant.run.push(ready - started)
          variant.stop.push(stopped - ready)
        }
      }
    }
    const reference = variants[2]!
    const rows = variants.map((variant) => ({
      variant: variant.name,
      runMs: round(median(variant.run)),
      stopMs: round(median(variant.stop)),
      runRatio: Number((median(variant.run) / median(reference.run)).toFixed(2)),
      stopRatio: Number((median(variant.stop) / median(reference.stop)).toFixed(2))
    }))
    for (const row of rows) log(`${row.variant}: RunPodSandbox ${row.runMs} ms, StopPodSandbox ${row.stopMs} ms`)
    const containerd = Bun.spawnSync(["containerd", "--version"]).stdout.toString().trim()
    const machine = `${navigator.hardwareConcurrency} CPUs, Linux ${readFileSync("/proc/sys/kernel/osrelease", "utf8").trim()}, Bun ${Bun.version}, ${containerd}`
    writeFileSync(join(OUT_DIR, "containerd.md"), [
      "# Pod sandboxes through containerd's CRI: tscni against the reference plugins",
      "",
      `Written by \`bun tests/bench/containerd.ts ${count}\` on ${new Date().toISOString()} (${round((Date.now() - began) / 60000)} min): ${machine}.`,
      "Each variant is its own containerd (1.6, runc, native snapshotter) in a node namespace with the same conflist: bridge (isGateway, ipMasq, hairpinMode) + host-local, portmap, bandwidth. " +
        `${count} sandboxes per variant, one at a time, the variants alternating; after one untimed warm-up each. RunPodSandbox's wall time includes containerd's own work (sandbox container, runc, namespace) besides the CNI ADD; StopPodSandbox's includes stopping the sandbox container besides the DEL. Medians.`,
      "",
      "| variant | RunPodSandbox → ready (ms) | ÷ reference | StopPodSandbox (ms) | ÷ reference |",
      "|---|---|---|---|---|",
      ...rows.map((row) => `| ${row.variant} | ${row.runMs} | ${row.runRatio}× | ${row.stopMs} | ${row.stopRatio}× |`),
      "",
      "Each sandbox here is its network's only pod, so every StopPodSandbox's DEL also removes the bridge (the reference never does) and the next RunPodSandbox makes it again: the empty-node case of docs/bench/scale.md (item 3 of its findings). containerd's own part of each call is the same for all three variants.",
      ""
    ].join("\n"))
    writeFileSync(join(OUT_DIR, "containerd.json"), JSON.stringify({ machine, count, variants: variants.map((v) => ({ name: v.name, run: v.run, stop: v.stop })) }, null, 2) + "\n")
    log(`done: ${join(OUT_DIR, "containerd.md")}`)
  } finally {
    for (const variant of variants) await variant.node.stop()
  }
}

await main()
