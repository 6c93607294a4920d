/**
 * `bun tests/bench/elements.ts [cycles]`: what one pod's keyed-table element calls cost
 * (issue #11), through libnftables 1.0.6 (how tscni made them before) and over nfnetlink
 * (how it makes them now), on a node holding
 *
 * - empty: nothing but the network's hostPort table (portmap's own skeleton);
 * - foreign: 5,000 nft rules and 2,500 chains in a kube-proxy-like table of their own;
 * - elements: 750 other pods' hostPort elements (2,250) in the same table's sets.
 *
 * Per state and path: the median wall time of `cycles` add / get / delete cycles of one
 * pod's elements (the three calls portmap ADD and DEL make), and the bytes each call
 * receives from the kernel (strace attached to this process for a few cycles: every
 * recvmsg/recvfrom of the calling thread, whoever makes it, libnftables included).
 *
 * Root; each state in a namespace of its own (tscni-bench-<pid>-*, host.ts), removed on
 * every path. Runs from source: no build needed. About 20 seconds.
 */
import { mkdtempSync, openSync, readFileSync, rmSync, writeSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { Effect } from "effect"
import type { NftElement, NftTable } from "@tscni/backend"
import { closeNamespaceResources, makeLinuxBackend } from "@tscni/backend-linux"
import { viaLibnftables } from "@tscni/backend-linux/nftSets"
import type { PortmapSettings } from "@tscni/plugin-portmap/config"
import { portmapElements, portmapTable } from "@tscni/plugin-portmap/rules"
import { cleanup, createNetns, deleteNetns, setUp, sh } from "./host.ts"
import { median } from "./lib.ts"

const CYCLES = Number(process.argv[2] ?? 200)
const TRACED_CYCLES = 5
const FOREIGN_RULES = 5000
const OTHER_PODS = 750
const OPS = ["add", "get", "delete"] as const
type Op = (typeof OPS)[number]
const PATHS = ["libnftables", "netlink"] as const
type Path = (typeof PATHS)[number]
const STATES = {
  empty: "the hostPort table alone",
  foreign: `+ ${FOREIGN_RULES.toLocaleString("en")} foreign nft rules, ${(FOREIGN_RULES / 2).toLocaleString("en")} chains (a table of their own)`,
  elements: `+ ${(OTHER_PODS * 3).toLocaleString("en")} other elements in the table's sets (${OTHER_PODS} pods)`
} as const
type State = keyof typeof STATES

const log = (message: string) => console.error(`[elements] ${message}`)

const settings = (mappings: PortmapSettings["mappings"]): PortmapSettings => ({
  network: "bench-elements",
  mappings,
  mappingsKnown: true,
  snat: true,
  masqAll: false,
  conditionsV4: [],
  conditionsV6: [],
  backend: "nftables",
  markMasqBit: 13,
  externalSetMarkChain: undefined
})
const TABLE: NftTable = portmapTable(settings([]))
/** one pod's hostPort elements: dnat4, hairpin4, local4 */
const podElements = (i: number): Array<NftElement> =>
  portmapElements(settings([{ hostPort: 20000 + i, containerPort: 80, protocol: "tcp", hostIP: undefined }]), [`10.96.${i >> 8}.${i & 255}`])
    .map((element) => ({ ...element, comment: `pm:bench:${String(i).padStart(12, "0")}` }))

/** A kube-proxy-like table: half the rules jump to chains of their own, each holding the other half's DNAT. */
const foreignScript = (rules: number): string => {
  const services = rules / 2
  const ip = (base: string, i: number) => `${base}.${Math.floor(i / 250)}.${(i % 250) + 1}`
  const lines = ["table ip kube-proxy {"]
  for (let i = 0; i < services; i++) lines.push(`  chain service-${i} { meta l4proto tcp dnat to ${ip("10.250", i)}:8080; }`)
  lines.push("  chain services {")
  for (let i = 0; i < services; i++) lines.push(`    ip daddr ${ip("172.30", i)} tcp dport 80 jump service-${i}`)
  lines.push("  }", "  chain nat-prerouting { type nat hook prerouting priority dstnat; policy accept; jump services; }", "}")
  return lines.join("\n") + "\n"
}

const nftIn = (name: string, script: string) => {
  const out = Bun.spawnSync(["ip", "netns", "exec", name, "nft", "-f", "-"], { stdin: new TextEncoder().encode(script), stdout: "pipe", stderr: "pipe" })
  if (out.exitCode !== 0) throw new Error(`nft -f in ${name}: ${out.stderr.toString()}`)
}

const backend = makeLinuxBackend()
const runSync = <A, E>(effect: Effect.Effect<A, E>): A => Effect.runSync(effect)

/** The three calls of one pod, through either path. */
const calls = (path: Path, netns: string, elements: ReadonlyArray<NftElement>): Record<Op, () => void> => {
  const keys = elements.map(({ set, key }) => ({ set, key }))
  return path === "netlink"
    ? {
      add: () => runSync(backend.addNftElements(netns, TABLE, elements)),
      get: () => {
        if (runSync(backend.getNftElements(netns, TABLE, keys)).length !== elements.length) throw new Error("netlink get: elements missing")
      },
      delete: () => runSync(backend.deleteNftElements(netns, TABLE, keys))
    }
    : {
      add: () => viaLibnftables.addElements(netns, TABLE, elements),
      get: () => {
        if (viaLibnftables.getElements(netns, TABLE, keys).length !== elements.length) throw new Error("libnftables get: elements missing")
      },
      delete: () => viaLibnftables.deleteElements(netns, TABLE, keys)
    }
}

/** Median ms per call over `cycles` add → get → delete cycles. */
const time = (call: Record<Op, () => void>, cycles: number): Record<Op, number> => {
  const samples: Record<Op, Array<number>> = { add: [], get: [], delete: [] }
  for (let i = 0; i < cycles; i++) {
    for (const op of OPS) {
      const start = Bun.nanoseconds()
      call[op]()
      samples[op].push((Bun.nanoseconds() - start) / 1e6)
    }
  }
  return { add: median(samples.add), get: median(samples.get), delete: median(samples.delete) }
}

/**
 * Bytes received per call: strace follows this process's threads while a few cycles run,
 * each call preceded by a marker written to /dev/null; what this (the JS) thread receives
 * after a marker is that call's. Median over the cycles.
 */
const traceBytes = async (scratch: string, call: Record<Op, () => void>): Promise<Record<Op, number>> => {
  const output = join(scratch, `strace-${Bun.nanoseconds()}`)
  const strace = Bun.spawn(["strace", "-f", "-p", String(process.pid), "-e", "trace=recvmsg,recvfrom,write", "-e", "signal=none", "-s", "16", "-o", output], { stderr: "pipe", stdout: "ignore" })
  try {
    // strace says so once it is attached to this (the main) thread
    const reader = strace.stderr.getReader()
    let said = ""
    while (!said.includes(`Process ${process.pid} attached`)) {
      const { value, done } = await reader.read()
      if (done) throw new Error(`strace ended before attaching: ${said}`)
      said += new TextDecoder().decode(value)
    }
    reader.releaseLock()
    const devNull = openSync("/dev/null", "w")
    for (let i = 0; i < TRACED_CYCLES; i++) {
      for (const op of OPS) {
        writeSync(devNull, `MARK-${op}-${i}`)
        call[op]()
      }
    }
    writeSync(devNull, "MARK-end")
  } finally {
    strace.kill("SIGINT")
    await strace.exited
  }
  const bytes: Record<Op, Array<number>> = { add: [], get: [], delete: [] }
  let current: { op: Op; i: number } | undefined
  const counts = new Map<string, number>()
  for (const line of readFileSync(output, "utf8").split("\n")) {
    // `pid call(args) = n`, or the end of a call another thread's interrupted: `pid <... call resumed>args) = n`
    const match = /^(\d+)\s+(?:<\.\.\. )?(\w+)(?: resumed>|\()(.*)\)\s+=\s+(-?\d+)/.exec(line)
    if (match === null || Number(match[1]) !== process.pid) continue
    const mark = /"MARK-(\w+)-(\d+)"/.exec(match[3]!)
    if (match[2] === "write" && mark !== null) current = { op: mark[1] as Op, i: Number(mark[2]) }
    else if (match[2] === "write" && match[3]!.includes('"MARK-end"')) current = undefined
    else if (match[2] !== "write" && current !== undefined && Number(match[4]) > 0) {
      const key = `${current.op}-${current.i}`
      counts.set(key, (counts.get(key) ?? 0) + Number(match[4]))
    }
  }
  rmSync(output, { force: true })
  for (const op of OPS) for (let i = 0; i < TRACED_CYCLES; i++) bytes[op].push(counts.get(`${op}-${i}`) ?? 0)
  return { add: median(bytes.add), get: median(bytes.get), delete: median(bytes.delete) }
}

interface Row {
  readonly state: State
  readonly path: Path
  readonly ms: Record<Op, number>
  readonly bytes: Record<Op, number>
}

const measureState = async (state: State, scratch: string): Promise<Array<Row>> => {
  const name = createNetns(`el-${state}`)
  const netns = `/run/netns/${name}`
  try {
    runSync(backend.createNftTable(netns, TABLE, []))
    if (state === "foreign") nftIn(name, foreignScript(FOREIGN_RULES))
    if (state === "elements") {
      const others = Array.from({ length: OTHER_PODS }, (_, i) => podElements(i)).flat()
      runSync(backend.addNftElements(netns, TABLE, others))
    }
    const probe = podElements(OTHER_PODS + 1)
    const rows: Array<Row> = []
    for (const path of PATHS) {
      const call = calls(path, netns, probe)
      // warm: the library and its context, the netlink socket, the sets' definitions
      for (let i = 0; i < 3; i++) for (const op of OPS) call[op]()
      const ms = time(call, CYCLES)
      const bytes = await traceBytes(scratch, call)
      rows.push({ state, path, ms, bytes })
      log(`${state} ${path}: ${OPS.map((op) => `${op} ${ms[op].toFixed(3)} ms ${bytes[op].toLocaleString("en")} B`).join(", ")}`)
    }
    return rows
  } finally {
    closeNamespaceResources(netns)
    deleteNetns(name)
  }
}

const main = async () => {
  setUp(log)
  if (sh(["strace", "-V"]).exitCode !== 0) throw new Error("strace is needed for the bytes received")
  const scratch = mkdtempSync(join(tmpdir(), "tscni-elements-"))
  try {
    const rows: Array<Row> = []
    for (const state of Object.keys(STATES) as Array<State>) rows.push(...(await measureState(state, scratch)))
    const out = [
      `One pod's hostPort elements (${podElements(0).length}: dnat4, hairpin4, local4) in portmap's table, ${CYCLES} add → get → delete cycles per state and path (median ms per call); bytes received per call (strace, median of ${TRACED_CYCLES}).`,
      "",
      "| node | path | add ms | get ms | delete ms | add bytes | get bytes | delete bytes |",
      "|---|---|---|---|---|---|---|---|",
      ...rows.map((row) =>
        `| ${STATES[row.state]} | ${row.path} | ${OPS.map((op) => row.ms[op].toFixed(3)).join(" | ")} | ${OPS.map((op) => row.bytes[op].toLocaleString("en")).join(" | ")} |`
      )
    ]
    console.log(out.join("\n"))
    if (process.argv.includes("--json")) console.log(JSON.stringify(rows))
  } finally {
    rmSync(scratch, { recursive: true, force: true })
  }
}

try {
  await main()
} catch (error) {
  console.error(`elements bench: ${error instanceof Error ? error.stack ?? error.message : String(error)}`)
  process.exitCode = 1
} finally {
  cleanup()
}
