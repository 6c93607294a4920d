/**
 * Measures the benches over namespace clusters share: medians, iperf3 throughput between two
 * namespaces, and a process's CPU time and RSS from /proc.
 */
import { readFileSync } from "node:fs"

export const median = (values: ReadonlyArray<number>): number => {
  const sorted = [...values].sort((a, b) => a - b)
  const mid = Math.floor(sorted.length / 2)
  return sorted.length % 2 === 1 ? sorted[mid]! : (sorted[mid - 1]! + sorted[mid]!) / 2
}

export const round = (value: number, digits = 1) => Number(value.toFixed(digits))

export interface Endpoint {
  readonly netns: string
  readonly ip: string
}

/** iperf3 from `from` to a one-shot server in `to`: Gbit/s received. */
export const throughput = async (from: Endpoint, to: Endpoint, seconds = 5): Promise<number> => {
  const server = Bun.spawn(["ip", "netns", "exec", to.netns, "iperf3", "-s", "-1", "-p", "5201", "--forceflush"], { stdout: "pipe", stderr: "ignore" })
  try {
    const reader = server.stdout.getReader()
    // the server prints its banner once it listens
    for (let seen = ""; !seen.includes("Server listening");) seen += new TextDecoder().decode((await reader.read()).value ?? new Uint8Array())
    const client = Bun.spawnSync(["ip", "netns", "exec", from.netns, "iperf3", "-c", to.ip, "-p", "5201", "-t", String(seconds), "-J"], { timeout: 30_000 })
    const result = JSON.parse(client.stdout.toString()) as { end: { sum_received: { bits_per_second: number } } }
    return result.end.sum_received.bits_per_second / 1e9
  } finally {
    server.kill("SIGKILL")
    await server.exited
  }
}

/** utime + stime of a process, in ms (clock ticks of 10 ms). */
export const cpuMs = (pid: number): number => {
  const fields = readFileSync(`/proc/${pid}/stat`, "utf8").split(") ")[1]!.split(" ")
  return (Number(fields[11]) + Number(fields[12])) * 10
}

export const rssMb = (pid: number): number => Number(/VmRSS:\s+(\d+)/.exec(readFileSync(`/proc/${pid}/status`, "utf8"))?.[1] ?? 0) / 1024
