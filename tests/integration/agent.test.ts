/**
 * `tscni agent`, the node's tscni process: its command line, its probes and metrics, and
 * the calls it serves, as a DaemonSet's kubelet or a scraper sees them (HTTP inside the test
 * node's namespace) and as the runtime does (the multicall binary's links). The protocol of
 * served calls itself is proven in resident.test.ts.
 */
import { afterAll, describe, expect, test } from "bun:test"
import { existsSync, mkdirSync, mkdtempSync, rmSync, symlinkSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { binary, freshNetns, podEnv } from "./harness.ts"
import { execIn, freshHost, spawnIn, type TestHost } from "./hostns.ts"

const scratch = mkdtempSync(join(tmpdir(), "tscni-agent-"))
const binDir = join(scratch, "bin")
mkdirSync(binDir)
for (const name of ["tscni", "bridge", "host-local"]) symlinkSync(binary("tscni"), join(binDir, name))
const TSCNI = join(binDir, "tscni")

const cleanups: Array<() => void> = []
afterAll(() => {
  cleanups.reverse().forEach((cleanup) => cleanup())
  rmSync(scratch, { recursive: true, force: true })
})

/** GET from inside the node's namespace (curl, not tscni): status and body; status 0 when nothing answers. */
const get = (h: TestHost, url: string): { status: number; body: string } => {
  const out = Bun.spawnSync(["ip", "netns", "exec", h.name, "curl", "-s", "-m", "3", "-w", "\n%{http_code}", url], { stdout: "pipe", stderr: "pipe" })
  const text = out.stdout.toString()
  const at = text.lastIndexOf("\n")
  return { status: Number(text.slice(at + 1)) || 0, body: text.slice(0, at) }
}

/** Waits for a condition with a deadline (the agent starting up), checking every 20 ms. */
const until = async (what: string, ok: () => boolean, ms = 10_000) => {
  const deadline = Date.now() + ms
  while (!ok()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`)
    await Bun.sleep(20)
  }
}

describe("tscni agent", () => {
  test("--help prints the usage and exits 0; an unknown or incomplete argument exits 2 with it; `tscni --help` lists the commands", () => {
    const help = Bun.spawnSync([TSCNI, "agent", "--help"], { stdout: "pipe", stderr: "pipe" })
    expect([help.exitCode, help.stdout.toString()]).toEqual([0, expect.stringContaining("--health-listen HOST:PORT")])
    expect(help.stderr.toString()).toBe("")
    // its older name answers the same, and neither starts serving
    expect(Bun.spawnSync([TSCNI, "daemon", "--help"], { stdout: "pipe" }).stdout.toString()).toBe(help.stdout.toString())
    for (const args of [["--bogus"], ["--socket"], ["--socket", "relative.sock"], ["--health-listen", "nowhere"], ["--health-listen", "127.0.0.1:99999"], ["--max-running-calls", "0"], ["--max-running-calls", "x"], ["--memory-soft-limit", "-1"], ["--memory-soft-limit", "lots"]]) {
      const bad = Bun.spawnSync([TSCNI, "agent", ...args], { stdout: "pipe", stderr: "pipe" })
      expect({ args, code: bad.exitCode, usage: bad.stderr.toString().includes("usage: tscni agent") }).toEqual({ args, code: 2, usage: true })
    }
    const top = Bun.spawnSync([TSCNI, "--help"], { stdout: "pipe" })
    expect([top.exitCode, top.stdout.toString()]).toEqual([0, expect.stringContaining("tscni agent")])
  })

  test("probes: /healthz and /readyz answer while it serves; its metrics count the calls it served; SIGTERM stops it cleanly", async () => {
    const h = freshHost()
    cleanups.push(h.remove)
    const socket = join(scratch, "agent.sock")
    const health = "127.0.0.1:19402"
    const agent = spawnIn(h, [TSCNI, "agent", "--socket", socket, "--health-listen", health], {}, "")
    cleanups.push(() => agent.proc.kill("SIGKILL"))
    await until("the agent's readiness", () => get(h, `http://${health}/readyz`).status === 200)
    expect(get(h, `http://${health}/healthz`)).toEqual({ status: 200, body: "ok\n" })
    expect(get(h, `http://${health}/nope`).status).toBe(404)

    // a pod's ADD and DEL, made by the runtime through the bridge link: served by the agent
    const pod = freshNetns()
    cleanups.push(pod.remove)
    const conf = JSON.stringify({
      cniVersion: "1.0.0",
      name: "agentnet",
      type: "bridge",
      bridge: "cni-ag0",
      isGateway: true,
      ipam: { type: "host-local", ranges: [[{ subnet: "10.131.0.0/24" }]], dataDir: h.dir }
    })
    const env = (command: string) => ({ ...podEnv(command, "agent-c1", pod.path, binDir), TSCNI_DAEMON_SOCKET: socket, TSCNI_LOG: "debug" })
    const add = execIn(h, join(binDir, "bridge"), env("ADD"), conf)
    expect([add.exitCode, add.stderr]).toEqual([0, expect.stringContaining("served by the tscni daemon")])
    expect(execIn(h, join(binDir, "bridge"), env("DEL"), JSON.stringify({ ...JSON.parse(conf), prevResult: add.json })).exitCode).toBe(0)

    const metrics = get(h, `http://${health}/metrics`)
    expect(metrics.status).toBe(200)
    expect(metrics.body).toContain('tscni_agent_calls_total{plugin="bridge",command="ADD",exit_code="0"} 1')
    expect(metrics.body).toContain('tscni_agent_calls_total{plugin="bridge",command="DEL",exit_code="0"} 1')
    expect(metrics.body).toMatch(/tscni_agent_call_duration_seconds_count\{plugin="bridge",command="ADD"\} 1/)
    expect(metrics.body).toContain("tscni_agent_ready 1")

    agent.proc.kill("SIGTERM")
    const done = await agent.done
    expect(done.exitCode).toBe(0)
    expect(done.stderr).toContain("tscni agent: stopped")
    expect(existsSync(socket)).toBe(false)
    expect(get(h, `http://${health}/healthz`).status).toBe(0)
  }, 60_000)

  test("--max-running-calls 1: a second call waits for the first's slot (the metrics say so), then both are served", async () => {
    const h = freshHost()
    cleanups.push(h.remove)
    const socket = join(scratch, "agent-slots.sock")
    const health = "127.0.0.1:19405"
    const agent = spawnIn(h, [TSCNI, "agent", "--socket", socket, "--health-listen", health, "--max-running-calls", "1"], {}, "")
    cleanups.push(() => agent.proc.kill("SIGKILL"))
    await until("the agent's readiness", () => get(h, `http://${health}/readyz`).status === 200)
    // host-local's store lock held with util-linux flock: the first ADD stops in IPAM, in its slot
    mkdirSync(join(h.dir, "slotnet"), { recursive: true })
    const lock = join(h.dir, "slotnet", "lock")
    const holder = Bun.spawn(["flock", lock, "cat"], { stdin: "pipe", stdout: "ignore" })
    cleanups.push(() => holder.kill("SIGKILL"))
    await until("the store lock", () => Bun.spawnSync(["flock", "-n", lock, "true"]).exitCode !== 0)
    const conf = JSON.stringify({
      cniVersion: "1.0.0",
      name: "slotnet",
      type: "bridge",
      bridge: "cni-ag2",
      ipam: { type: "host-local", ranges: [[{ subnet: "10.131.2.0/24" }]], dataDir: h.dir }
    })
    const pods = [freshNetns(), freshNetns()]
    for (const pod of pods) cleanups.push(pod.remove)
    const env = (command: string, i: number) => ({ ...podEnv(command, `agent-slot-${i}`, pods[i]!.path, binDir), TSCNI_DAEMON_SOCKET: socket, TSCNI_LOG: "debug" })
    const gauges = () => {
      const body = get(h, `http://${health}/metrics`).body
      return { running: /^tscni_agent_calls_running (\d+)$/m.exec(body)?.[1], waiting: /^tscni_agent_calls_waiting (\d+)$/m.exec(body)?.[1] }
    }
    const first = spawnIn(h, join(binDir, "bridge"), env("ADD", 0), conf)
    await until("the first call running", () => gauges().running === "1")
    const second = spawnIn(h, join(binDir, "bridge"), env("ADD", 1), conf)
    await until("the second call waiting", () => gauges().waiting === "1")
    expect(gauges()).toEqual({ running: "1", waiting: "1" })
    // the lock goes: the first finishes and hands its slot to the second
    void holder.stdin.end()
    await holder.exited
    const [a, b] = [await first.done, await second.done]
    expect([a.exitCode, a.stderr.includes("served by the tscni daemon"), b.exitCode, b.stderr.includes("served by the tscni daemon")]).toEqual([0, true, 0, true])
    expect(gauges()).toEqual({ running: "0", waiting: "0" })
    for (const [i, run] of [a, b].entries()) {
      expect(execIn(h, join(binDir, "bridge"), env("DEL", i), JSON.stringify({ ...JSON.parse(conf), prevResult: run.json })).exitCode).toBe(0)
    }
    agent.proc.kill("SIGTERM")
    expect((await agent.done).exitCode).toBe(0)
  }, 60_000)

  test("as the DaemonSet runs it, in a mount namespace of its own chrooted into the host's root, it serves the host's calls", async () => {
    const h = freshHost()
    cleanups.push(h.remove)
    const socket = join(scratch, "agent-ds.sock")
    const container = mkdtempSync(join(tmpdir(), "tscni-container-"))
    cleanups.push(() => rmSync(container, { recursive: true, force: true }))
    // a container's view: its own mounts, the host's root mounted at /host with the host's
    // later mounts propagated (HostToContainer), and the agent chrooted into it
    const script = `set -e; mkdir -p ${container}/host; mount --rbind / ${container}/host; mount --make-rslave ${container}/host; exec chroot ${container}/host ${TSCNI} agent --socket ${socket} --health-listen 127.0.0.1:19404`
    const agent = spawnIn(h, ["unshare", "--mount", "--propagation", "slave", "sh", "-c", script], {}, "")
    cleanups.push(() => agent.proc.kill("SIGKILL"))
    await until("the agent's readiness", () => get(h, "http://127.0.0.1:19404/readyz").status === 200)
    const pod = freshNetns()
    cleanups.push(pod.remove)
    const conf = JSON.stringify({
      cniVersion: "1.0.0",
      name: "agentds",
      type: "bridge",
      bridge: "cni-ag1",
      ipam: { type: "host-local", ranges: [[{ subnet: "10.131.1.0/24" }]], dataDir: h.dir }
    })
    const env = (command: string) => ({ ...podEnv(command, "agent-ds", pod.path, binDir), TSCNI_DAEMON_SOCKET: socket, TSCNI_LOG: "debug" })
    const add = execIn(h, join(binDir, "bridge"), env("ADD"), conf)
    expect([add.exitCode, add.stderr]).toEqual([0, expect.stringContaining("served by the tscni daemon")])
    // the pod's namespace, made by the runtime after the agent started, was seen through the propagated mounts
    expect(Bun.spawnSync(["ip", "-n", pod.name, "-j", "addr", "show", "eth0"]).stdout.toString()).toContain("10.131.1.")
    expect(execIn(h, join(binDir, "bridge"), env("DEL"), JSON.stringify({ ...JSON.parse(conf), prevResult: add.json })).exitCode).toBe(0)
    agent.proc.kill("SIGTERM")
    expect((await agent.done).exitCode).toBe(0)
  }, 60_000)

  test("a second agent on the same socket refuses to start and leaves the first serving", async () => {
    const h = freshHost()
    cleanups.push(h.remove)
    const socket = join(scratch, "agent2.sock")
    const first = spawnIn(h, [TSCNI, "agent", "--socket", socket, "--health-listen", "off"], {}, "")
    cleanups.push(() => first.proc.kill("SIGKILL"))
    await until("the first agent's socket", () => existsSync(socket))
    const second = execIn(h, [TSCNI, "agent", "--socket", socket, "--health-listen", "127.0.0.1:19403"], {}, "")
    expect([second.exitCode, second.stderr]).toEqual([1, expect.stringContaining(`another daemon is listening on ${socket}`)])
    expect(existsSync(socket)).toBe(true)
    first.proc.kill("SIGTERM")
    expect((await first.done).exitCode).toBe(0)
  }, 30_000)
})
