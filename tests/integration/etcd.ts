/**
 * A real etcd (Debian's etcd-server) started by a test: in the test's own network
 * namespace (the cluster topology's) or on loopback, with a data dir of its own, stopped by
 * PID and its data removed on every path. Ready when its client port answers `etcdctl
 * endpoint health`, polled: a condition, not a guess at how long it takes.
 */
import { mkdtempSync, rmSync, writeFileSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"

export interface RunningEtcd {
  readonly endpoint: string
  readonly pid: number
  /** etcdctl against this etcd (in its namespace); throws on failure */
  readonly etcdctl: (...args: ReadonlyArray<string>) => string
  readonly stop: () => Promise<void>
  /** writes many keys at once through etcd's JSON gateway (one process, many requests in flight); the last revision written */
  readonly putMany: (entries: ReadonlyArray<readonly [string, string]>) => number
  /** SIGSTOP / SIGCONT: etcd out of reach (connections open, nothing answered), then back */
  readonly pause: () => void
  readonly resume: () => void
}

const inNetns = (netns: string | undefined, argv: ReadonlyArray<string>): Array<string> =>
  netns === undefined ? [...argv] : ["ip", "netns", "exec", netns, ...argv]

/** A free TCP port on loopback, as the kernel picks one. */
const freePort = (): number => {
  const server = Bun.listen({ hostname: "127.0.0.1", port: 0, socket: { data() {} } })
  const port = server.port
  server.stop(true)
  return port
}

/**
 * Starts etcd listening for clients on `address` (default 127.0.0.1 and a free port) in
 * `netns` (default: the test's own namespace).
 */
export const startEtcd = async (options: { readonly netns?: string; readonly address?: string } = {}): Promise<RunningEtcd> => {
  const dir = mkdtempSync(join(tmpdir(), "tscni-etcd-"))
  const address = options.address ?? "127.0.0.1"
  const clientPort = options.netns === undefined ? freePort() : 2379
  const peerPort = options.netns === undefined ? freePort() : 2380
  const endpoint = `http://${address}:${clientPort}`
  const peer = `http://127.0.0.1:${peerPort}`
  const child = Bun.spawn(inNetns(options.netns, [
    "etcd",
    "--name", "test",
    "--data-dir", join(dir, "data"),
    "--listen-client-urls", endpoint,
    "--advertise-client-urls", endpoint,
    "--listen-peer-urls", peer,
    "--initial-advertise-peer-urls", peer,
    "--initial-cluster", `test=${peer}`,
    "--logger", "zap",
    "--log-outputs", "stderr"
  ]), { stdout: "ignore", stderr: Bun.file(join(dir, "etcd.log")) })
  const etcdctl = (...args: ReadonlyArray<string>): string => {
    const run = Bun.spawnSync(inNetns(options.netns, ["etcdctl", `--endpoints=${endpoint}`, "--dial-timeout=2s", "--command-timeout=5s", ...args]), {
      env: { ...process.env, ETCDCTL_API: "3" }
    })
    if (run.exitCode !== 0) throw new Error(`etcdctl ${args.join(" ")}: ${run.stderr.toString()}`)
    return run.stdout.toString()
  }
  const stop = async () => {
    child.kill("SIGKILL")
    await child.exited
    rmSync(dir, { recursive: true, force: true })
  }
  for (let attempt = 0; ; attempt++) {
    if (child.exitCode !== null) {
      const log = await Bun.file(join(dir, "etcd.log")).text().catch(() => "")
      await stop()
      throw new Error(`etcd exited (${child.exitCode}) before it was healthy:\n${log.slice(-2000)}`)
    }
    try {
      etcdctl("endpoint", "health")
      break
    } catch (error) {
      if (attempt >= 200) {
        await stop()
        throw error
      }
      await Bun.sleep(50)
    }
  }
  const putMany = (entries: ReadonlyArray<readonly [string, string]>): number => {
    const file = join(dir, `put-${Date.now()}-${Math.random().toString(36).slice(2)}.json`)
    writeFileSync(file, JSON.stringify(entries))
    const script = `
      const entries = await Bun.file(${JSON.stringify(file)}).json()
      const b64 = (text) => Buffer.from(text).toString("base64")
      let last = 0, next = 0
      const worker = async () => {
        while (next < entries.length) {
          const [key, value] = entries[next++]
          const response = await fetch(${JSON.stringify(`${endpoint}/v3/kv/put`)}, { method: "POST", body: JSON.stringify({ key: b64(key), value: b64(value) }) })
          if (!response.ok) throw new Error("put " + key + ": " + response.status + " " + await response.text())
          last = Math.max(last, Number((await response.json()).header.revision))
        }
      }
      await Promise.all(Array.from({ length: 16 }, worker))
      console.log(last)`
    const run = Bun.spawnSync(inNetns(options.netns, [process.execPath, "-e", script]))
    rmSync(file, { force: true })
    if (run.exitCode !== 0) throw new Error(`putMany: ${run.stderr.toString()}`)
    return Number(run.stdout.toString().trim())
  }
  return { endpoint, pid: child.pid, etcdctl, putMany, stop, pause: () => child.kill("SIGSTOP"), resume: () => child.kill("SIGCONT") }
}
