/**
 * A test cluster built of namespaces: an underlay bridge in a namespace of its own, etcd in
 * another (started by the test, Debian's etcd-server), and node namespaces, each with a veth
 * to the underlay, an address on 10.<n>.0.0/24 and a default route into the underlay (its
 * gateway answers nothing: no packet leaves the test's namespaces). Agents are the compiled
 * `tscni agent`, one per node, with their own socket, node file and health port.
 * Everything is removed, and every process this made is killed by PID, on every path.
 */
import { mkdtempSync, rmSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { binary, freshNetns, ip } from "./harness.ts"
import { type RunningEtcd, startEtcd } from "./etcd.ts"

export interface TestNode {
  readonly name: string
  /** the node's network namespace */
  readonly netns: string
  /** its underlay address */
  readonly address: string
  readonly nodeFile: string
  readonly socket: string
}

export interface RunningAgent {
  readonly pid: number
  /** stderr so far */
  readonly log: () => string
  readonly exited: Promise<number>
}

export interface TestCluster {
  readonly etcd: RunningEtcd
  readonly prefix: string
  readonly nodes: ReadonlyArray<TestNode>
  /** starts the agent of `node` with the cluster's flags plus `extra` */
  readonly startAgent: (node: TestNode, extra?: ReadonlyArray<string>) => RunningAgent
  /** `tscni agent …` run to completion in the node's namespace */
  readonly agentCommand: (node: TestNode, args: ReadonlyArray<string>) => { readonly exitCode: number; readonly stdout: string; readonly stderr: string }
  /** HTTP GET on the node's agent's health port, from inside its namespace */
  readonly probe: (node: TestNode, path: string) => { readonly status: number; readonly body: string }
  readonly remove: () => Promise<void>
}

export const HEALTH_PORT = 9402

let clusters = 0

/** Polls `check` every 50 ms until it returns a value (not undefined); throws naming `what` after `timeoutMs`. */
export const until = async <A>(what: string, check: () => A | undefined, timeoutMs = 30_000): Promise<A> => {
  const deadline = Date.now() + timeoutMs
  for (;;) {
    const value = check()
    if (value !== undefined) return value
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`)
    await Bun.sleep(50)
  }
}

/** A cluster of `nodeCount` nodes on one underlay segment, etcd on it too. */
export const makeCluster = async (nodeCount: number): Promise<TestCluster> => {
  // a /24 of its own per cluster of this run: 10.(200 + n).0.0/24
  const segment = `10.${200 + (clusters++ % 50)}.0`
  const dir = mkdtempSync(join(tmpdir(), "tscni-cluster-"))
  const namespaces: Array<{ remove: () => void }> = []
  const agents: Array<Bun.Subprocess> = []
  let etcd: RunningEtcd | undefined
  const remove = async () => {
    for (const agent of agents) agent.kill("SIGKILL")
    await Promise.all(agents.map((agent) => agent.exited))
    await etcd?.stop()
    for (const netns of namespaces.reverse()) netns.remove()
    rmSync(dir, { recursive: true, force: true })
  }
  try {
    const underlay = freshNetns()
    namespaces.push(underlay)
    ip("-n", underlay.name, "link", "add", "br0", "type", "bridge")
    ip("-n", underlay.name, "link", "set", "br0", "up")
    const attach = (netns: string, address: string) => {
      const port = `p${address.split(".")[3]}`
      ip("-n", underlay.name, "link", "add", port, "type", "veth", "peer", "name", "eth0", "netns", netns)
      ip("-n", underlay.name, "link", "set", port, "master", "br0", "up")
      ip("-n", netns, "link", "set", "lo", "up")
      ip("-n", netns, "addr", "add", `${address}/24`, "dev", "eth0")
      ip("-n", netns, "link", "set", "eth0", "up")
      ip("-n", netns, "route", "add", "default", "via", `${segment}.254`, "dev", "eth0", "onlink")
    }
    const etcdNetns = freshNetns()
    namespaces.push(etcdNetns)
    attach(etcdNetns.name, `${segment}.1`)
    etcd = await startEtcd({ netns: etcdNetns.name, address: `${segment}.1` })
    const nodes: Array<TestNode> = []
    for (let i = 1; i <= nodeCount; i++) {
      const netns = freshNetns()
      namespaces.push(netns)
      attach(netns.name, `${segment}.${10 + i}`)
      nodes.push({
        name: `node${i}`,
        netns: netns.name,
        address: `${segment}.${10 + i}`,
        nodeFile: join(dir, `node${i}`, "node.json"),
        socket: join(dir, `node${i}.sock`)
      })
    }
    const prefix = `/tscni-test-${process.pid}-${clusters}`
    const clusterFlags = (node: TestNode) => [
      "--socket", node.socket,
      "--health-listen", `127.0.0.1:${HEALTH_PORT}`,
      "--etcd-endpoints", etcd!.endpoint,
      "--etcd-prefix", prefix,
      "--node", node.name,
      "--node-file", node.nodeFile
    ]
    const startAgent = (node: TestNode, extra: ReadonlyArray<string> = []): RunningAgent => {
      const child = Bun.spawn(["ip", "netns", "exec", node.netns, binary("tscni"), "agent", ...clusterFlags(node), ...extra], {
        stdout: "ignore",
        stderr: "pipe"
      })
      agents.push(child)
      let log = ""
      void (async () => {
        const decoder = new TextDecoder()
        for await (const chunk of child.stderr) log += decoder.decode(chunk, { stream: true })
      })()
      return { pid: child.pid, log: () => log, exited: child.exited }
    }
    const agentCommand = (node: TestNode, args: ReadonlyArray<string>) => {
      const run = Bun.spawnSync(["ip", "netns", "exec", node.netns, binary("tscni"), "agent", ...args])
      return { exitCode: run.exitCode, stdout: run.stdout.toString(), stderr: run.stderr.toString() }
    }
    const probe = (node: TestNode, path: string) => {
      const run = Bun.spawnSync(["ip", "netns", "exec", node.netns, "curl", "-s", "-o", "-", "-w", "\n%{http_code}", `http://127.0.0.1:${HEALTH_PORT}${path}`])
      const out = run.stdout.toString()
      const cut = out.lastIndexOf("\n")
      return { status: Number(out.slice(cut + 1)), body: out.slice(0, cut) }
    }
    return { etcd, prefix, nodes, startAgent, agentCommand, probe, remove }
  } catch (error) {
    await remove()
    throw error
  }
}
