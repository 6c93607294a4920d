/**
 * Drives one probe agent (pod-main.ts) per pod: starts each inside its pod's network
 * namespace, sends it batches of probes over its unix control socket, and turns the answers
 * into a truth table keyed like the oracle's ({@link matrixKey}).
 */
import type { Socket, Subprocess } from "bun"
import { join, resolve } from "node:path"
import { matrixKey } from "./oracle.ts"
import { flushUnsent, writeAll } from "./socket-writes.ts"

const POD_MAIN = resolve(import.meta.dir, "pod-main.ts")
const READY_DEADLINE_MS = 30_000
const STOP_DEADLINE_MS = 5_000

/** A pod to probe from: its network namespace (name under /var/run/netns) and its `namespace/name` key. */
export interface ProbePod {
  readonly netns: string
  readonly key: string
}

/** One probe: a new TCP connection or a UDP echo to ip:port. */
export interface ProbeSpec {
  ip: string
  port: number
  protocol: "TCP" | "UDP"
}

/** The running probe agents. */
export interface Prober {
  /** Runs every probe concurrently from pod `from` (a key); true = answered within the timeout. */
  probe(from: string, probes: Array<ProbeSpec>, timeoutMs?: number): Promise<boolean[]>
  /** Ends every agent started (by PID); safe to call more than once. */
  stop(): Promise<void>
}

interface Agent {
  readonly proc: Subprocess<"pipe", "pipe", "pipe">
  readonly socket: Socket<undefined>
  readonly pending: Map<number, { resolve: (results: boolean[]) => void; reject: (error: Error) => void }>
}


/** Reads the agent's stdout until it shows a line `ready`; throws with the agent's stderr if it ends first or takes too long. */
const waitReady = async (proc: Subprocess<"pipe", "pipe", "pipe">, key: string): Promise<void> => {
  const reader = proc.stdout.getReader()
  const decoder = new TextDecoder()
  let seen = ""
  const deadline = Bun.sleep(READY_DEADLINE_MS).then(() => "deadline" as const)
  try {
    while (!seen.split("\n").includes("ready")) {
      const next = await Promise.race([reader.read(), deadline])
      if (next === "deadline") throw new Error(`probe agent of ${key} not ready after ${READY_DEADLINE_MS} ms`)
      if (next.done) {
        throw new Error(`probe agent of ${key} ended before ready (exit ${await proc.exited}): ${await new Response(proc.stderr).text()}`)
      }
      seen += decoder.decode(next.value, { stream: true })
    }
  } finally {
    reader.releaseLock()
  }
}

/** Connects to an agent's control socket and routes its newline-delimited answers to the pending requests. */
const openControl = async (path: string, pending: Agent["pending"]): Promise<Socket<undefined>> => {
  let buffered = ""
  const failAll = (error: Error) => {
    for (const waiter of pending.values()) waiter.reject(error)
    pending.clear()
  }
  return Bun.connect({
    unix: path,
    socket: {
      data: (_socket, data) => {
        const lines = (buffered + data.toString()).split("\n")
        buffered = lines.pop() ?? ""
        for (const line of lines) {
          if (line.trim() === "") continue
          const reply = JSON.parse(line) as { id: number; results?: boolean[]; error?: string }
          const waiter = pending.get(reply.id)
          pending.delete(reply.id)
          if (reply.results !== undefined) waiter?.resolve(reply.results)
          else waiter?.reject(new Error(`probe agent: ${reply.error ?? "no results"}`))
        }
      },
      drain: flushUnsent,
      close: () => failAll(new Error(`control socket ${path} closed`)),
      error: (_socket, error) => failAll(error)
    }
  })
}

/** Ends one agent: SIGTERM, then SIGKILL if it has not exited in time; waits for its exit. */
const endProcess = async (proc: Subprocess): Promise<void> => {
  if (proc.exitCode !== null || proc.signalCode !== null) return
  proc.kill("SIGTERM")
  const ended = await Promise.race([proc.exited.then(() => true), Bun.sleep(STOP_DEADLINE_MS).then(() => false)])
  if (!ended) {
    proc.kill("SIGKILL")
    await proc.exited
  }
}

/**
 * Starts one pod-main per pod (`ip netns exec <netns> <bun> pod-main.ts <dir>/<i>.sock`),
 * waits until each says `ready` and connects to its control socket. `dir` holds the control
 * sockets. If any agent fails to start, those already started are stopped before it throws.
 * Each agent's probes leave from fresh source ports counted from `firstSourcePort` (default
 * 20000; see pod-main.ts): a later prober reusing the same namespaces within conntrack's
 * timeouts should pass a different one (e.g. 20000 + 35000/k for its k-th run) so that no
 * flow of an earlier prober is ever reused.
 */
export const startProber = async (pods: ReadonlyArray<ProbePod>, dir: string, options: { firstSourcePort?: number } = {}): Promise<Prober> => {
  const agents = new Map<string, Agent>()
  const procs: Array<Subprocess> = []
  let stopped: Promise<void> | undefined
  const stop = (): Promise<void> => {
    stopped ??= (async () => {
      for (const agent of agents.values()) agent.socket.end()
      await Promise.all(procs.map(endProcess))
    })()
    return stopped
  }
  try {
    await Promise.all(pods.map(async (pod, index) => {
      const path = join(dir, `probe-${index}.sock`)
      const proc = Bun.spawn(
        ["ip", "netns", "exec", pod.netns, process.execPath, POD_MAIN, path, String(options.firstSourcePort ?? 20_000)],
        { stdin: "pipe", stdout: "pipe", stderr: "pipe" }
      )
      procs.push(proc) // `ip netns exec` execs bun: this PID is the agent's own
      await waitReady(proc, pod.key)
      const pending: Agent["pending"] = new Map()
      agents.set(pod.key, { proc, socket: await openControl(path, pending), pending })
    }))
  } catch (error) {
    await stop()
    throw error
  }
  let nextId = 0
  return {
    probe: (from, probes, timeoutMs = 2000) => {
      const agent = agents.get(from)
      if (agent === undefined) return Promise.reject(new Error(`no probe agent for ${from}`))
      if (stopped !== undefined) return Promise.reject(new Error("prober stopped"))
      const id = nextId++
      const { promise, resolve: done, reject } = Promise.withResolvers<boolean[]>()
      agent.pending.set(id, { resolve: done, reject })
      writeAll(agent.socket, Buffer.from(JSON.stringify({ id, probes, timeoutMs }) + "\n"))
      return promise
    },
    stop
  }
}

/**
 * The observed truth table: from every pod to every pod (itself included) on every port and
 * protocol, each source's batch sent to its agent at once and all sources in parallel.
 * Keys as the oracle's expectedMatrix: `ns/a -> ns/b 80/TCP`.
 */
export const probeMatrix = async (
  prober: Prober,
  pods: ReadonlyArray<{ key: string; ip: string }>,
  ports: ReadonlyArray<number>,
  protocols: ReadonlyArray<"TCP" | "UDP">,
  timeoutMs = 2000
): Promise<Map<string, boolean>> => {
  const batches = pods.map((src) => {
    const cells: Array<{ key: string; spec: ProbeSpec }> = []
    for (const dst of pods) {
      for (const port of ports) {
        for (const protocol of protocols) {
          cells.push({ key: matrixKey(src.key, dst.key, port, protocol), spec: { ip: dst.ip, port, protocol } })
        }
      }
    }
    return { src, cells }
  })
  const answers = await Promise.all(batches.map(({ src, cells }) => prober.probe(src.key, cells.map((cell) => cell.spec), timeoutMs)))
  const out = new Map<string, boolean>()
  batches.forEach(({ cells }, b) => cells.forEach((cell, i) => out.set(cell.key, answers[b]?.[i] ?? false)))
  return out
}

const verdict = (value: boolean | undefined): string => (value === undefined ? "missing" : value ? "allowed" : "denied")

/**
 * Every cell where `actual` differs from `expected` (or is missing from either), one line
 * each: `x/a -> y/b 80/TCP: expected allowed, got denied`. Empty when they agree.
 */
export const diffMatrix = (expected: ReadonlyMap<string, boolean>, actual: ReadonlyMap<string, boolean>): string[] => {
  const keys = [...new Set([...expected.keys(), ...actual.keys()])].sort()
  return keys
    .filter((key) => expected.get(key) !== actual.get(key))
    .map((key) => `${key}: expected ${verdict(expected.get(key))}, got ${verdict(actual.get(key))}`)
}

/**
 * A compact print of a truth table: one block per port/protocol, a row per source, a column
 * per destination (numbered, legend above), `.` allowed, `X` denied, `?` missing. With
 * `expected`, a cell that differs is shown as `!` (observed allowed) or `#` (observed denied).
 */
export const formatMatrix = (matrix: ReadonlyMap<string, boolean>, expected?: ReadonlyMap<string, boolean>): string => {
  const parsed = [...matrix.keys()].map((key) => {
    const match = /^(.*) -> (.*) (\d+)\/(\w+)$/.exec(key)
    return { key, src: match?.[1] ?? key, dst: match?.[2] ?? "", target: `${match?.[3] ?? ""}/${match?.[4] ?? ""}` }
  })
  const pods = [...new Set(parsed.flatMap((cell) => [cell.src, cell.dst]))].sort()
  const targets = [...new Set(parsed.map((cell) => cell.target))].sort()
  const width = Math.max(...pods.map((pod) => pod.length), 4)
  const lines = pods.map((pod, i) => `  [${i}] ${pod}`)
  for (const target of targets) {
    const [port, protocol] = target.split("/")
    lines.push(`${target.padEnd(width)}  ${pods.map((_pod, i) => String(i).padStart(2)).join(" ")}`)
    for (const src of pods) {
      const row = pods.map((dst) => {
        const key = matrixKey(src, dst, Number(port), protocol ?? "")
        const value = matrix.get(key)
        const want = expected?.get(key)
        const mark = value === undefined ? "?" : expected !== undefined && want !== value ? (value ? "!" : "#") : value ? "." : "X"
        return mark.padStart(2)
      })
      lines.push(`${src.padEnd(width)}  ${row.join(" ")}`)
    }
  }
  return lines.join("\n")
}
