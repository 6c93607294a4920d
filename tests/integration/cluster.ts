/**
 * A test cluster built of namespaces: an underlay bridge in a namespace of its own, etcd in
 * another (started by the test, Debian's etcd-server), and node namespaces, each with a veth
 * to the underlay, an address on 10.<n>.0.0/24 and a default route into the underlay (its
 * gateway answers nothing: no packet leaves the test's namespaces). Agents are the compiled
 * `tscni agent`, one per node, with their own socket, node file and health port.
 * Everything is removed, and every process this made is killed by PID, on every path.
 */
import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, symlinkSync, writeFileSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { BIN_DIR, binary, freshNetns, ip } from "./harness.ts"
import { type RunningEtcd, startEtcd } from "./etcd.ts"

export interface TestNode {
  readonly name: string
  /** the node's network namespace */
  readonly netns: string
  /** its underlay address */
  readonly address: string
  /** its IPv6 underlay address (clusters made with `ipv6Underlay`) */
  readonly address6: string | undefined
  readonly nodeFile: string
  readonly socket: string
}

export interface RunningAgent {
  readonly pid: number
  /** stderr so far */
  readonly log: () => string
  readonly exited: Promise<number>
}

/** The conventions test API server of a cluster made with `datastore: "kubernetes"`, run in the etcd namespace. */
export interface TestKubeApi {
  readonly url: string
  readonly kubeconfig: string
  /** one command to the server process (see kube-apiserver-main.ts), its answer */
  readonly send: (command: Record<string, unknown>) => Promise<unknown>
}

export interface TestCluster {
  readonly etcd: RunningEtcd
  /** with `datastore: "kubernetes"`: the API server the agents use instead of etcd */
  readonly kube: TestKubeApi | undefined
  /** the cluster config file the agents read with the kubernetes datastore */
  readonly clusterConfigFile: string
  readonly prefix: string
  readonly nodes: ReadonlyArray<TestNode>
  /** a host on the underlay that is not a node: a destination outside the cluster network */
  readonly outside: { readonly netns: string; readonly ip: string }
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

/**
 * A cluster of `nodeCount` nodes on one underlay segment, etcd on it too. Nodes named in
 * `routed` (1-based) are on a second segment instead, behind a router namespace: not on-link
 * for the others (host-gw cannot reach them; VXLAN can).
 */
export const makeCluster = async (
  nodeCount: number,
  options: { readonly routed?: ReadonlyArray<number>; readonly datastore?: "etcd" | "kubernetes"; readonly ipv6Underlay?: boolean } = {}
): Promise<TestCluster> => {
  // two /24s of their own per cluster of this run: 10.(200 + n).0.0/24 and 10.(200 + n).1.0/24
  const base = `10.${200 + (clusters++ % 50)}`
  const segment = `${base}.0`
  const segmentB = `${base}.1`
  const dir = mkdtempSync(join(tmpdir(), "tscni-cluster-"))
  const namespaces: Array<{ remove: () => void }> = []
  const agents: Array<Bun.Subprocess> = []
  let etcd: RunningEtcd | undefined
  let apiServer: Bun.Subprocess<"pipe", "pipe", "ignore"> | undefined
  const remove = async () => {
    for (const agent of agents) agent.kill("SIGKILL")
    await Promise.all(agents.map((agent) => agent.exited))
    apiServer?.kill("SIGKILL")
    await apiServer?.exited
    await etcd?.stop()
    for (const netns of namespaces.reverse()) netns.remove()
    rmSync(dir, { recursive: true, force: true })
  }
  try {
    const underlay = freshNetns()
    namespaces.push(underlay)
    for (const bridge of ["br0", "br1"]) {
      ip("-n", underlay.name, "link", "add", bridge, "type", "bridge")
      ip("-n", underlay.name, "link", "set", bridge, "up")
    }
    let ports = 0
    /** A veth from the underlay's bridge (br0: segment A, br1: segment B) to `ifname` in `netns`, with `address`. */
    const plug = (netns: string, bridge: "br0" | "br1", ifname: string, address: string) => {
      const port = `p${ports++}`
      ip("-n", underlay.name, "link", "add", port, "type", "veth", "peer", "name", ifname, "netns", netns)
      ip("-n", underlay.name, "link", "set", port, "master", bridge, "up")
      ip("-n", netns, "link", "set", "lo", "up")
      ip("-n", netns, "addr", "add", `${address}/24`, "dev", ifname)
      ip("-n", netns, "link", "set", ifname, "up")
    }
    const v6Of = (address: string) => `fd99:${clusters}::${address.split(".")[3]}`
    const attach = (netns: string, address: string) => {
      const onB = address.startsWith(`${segmentB}.`)
      plug(netns, onB ? "br1" : "br0", "eth0", address)
      // an IPv6 underlay too, usable at once (no duplicate address detection)
      if (options.ipv6Underlay === true) ip("-n", netns, "addr", "add", `${v6Of(address)}/64`, "dev", "eth0", "nodad")
      // the default route leads to the router (which only the routed topology's traffic uses)
      ip("-n", netns, "route", "add", "default", "via", `${onB ? segmentB : segment}.254`, "dev", "eth0", "onlink")
    }
    if ((options.routed ?? []).length > 0) {
      const router = freshNetns()
      namespaces.push(router)
      plug(router.name, "br0", "eth0", `${segment}.254`)
      plug(router.name, "br1", "eth1", `${segmentB}.254`)
      Bun.spawnSync(["ip", "netns", "exec", router.name, "sysctl", "-qw", "net.ipv4.ip_forward=1"])
    }
    const etcdNetns = freshNetns()
    namespaces.push(etcdNetns)
    attach(etcdNetns.name, `${segment}.1`)
    etcd = await startEtcd({ netns: etcdNetns.name, address: `${segment}.1` })
    let kube: TestKubeApi | undefined
    if (options.datastore === "kubernetes") {
      const server = Bun.spawn(["ip", "netns", "exec", etcdNetns.name, process.execPath, join(import.meta.dir, "kube-apiserver-main.ts"), `${segment}.1`], {
        stdin: "pipe",
        stdout: "pipe",
        stderr: "ignore"
      })
      apiServer = server
      const reader = server.stdout.getReader()
      const decoder = new TextDecoder()
      let buffered = ""
      const nextLine = async (): Promise<string> => {
        for (;;) {
          const end = buffered.indexOf("\n")
          if (end >= 0) {
            const line = buffered.slice(0, end)
            buffered = buffered.slice(end + 1)
            return line
          }
          const { done, value } = await reader.read()
          if (done) throw new Error("the test API server ended")
          buffered += decoder.decode(value, { stream: true })
        }
      }
      const hello = JSON.parse(await nextLine()) as { url: string; kubeconfig: string }
      kube = {
        url: hello.url,
        kubeconfig: hello.kubeconfig,
        send: async (command) => {
          server.stdin.write(JSON.stringify(command) + "\n")
          await server.stdin.flush()
          return JSON.parse(await nextLine()) as unknown
        }
      }
    }
    const outsideNetns = freshNetns()
    namespaces.push(outsideNetns)
    attach(outsideNetns.name, `${segment}.200`)
    const outside = { netns: outsideNetns.name, ip: `${segment}.200` }
    const nodes: Array<TestNode> = []
    for (let i = 1; i <= nodeCount; i++) {
      const netns = freshNetns()
      namespaces.push(netns)
      const address = `${(options.routed ?? []).includes(i) ? segmentB : segment}.${10 + i}`
      attach(netns.name, address)
      nodes.push({
        name: `node${i}`,
        netns: netns.name,
        address,
        address6: options.ipv6Underlay === true ? v6Of(address) : undefined,
        nodeFile: join(dir, `node${i}`, "node.json"),
        socket: join(dir, `node${i}.sock`)
      })
    }
    const prefix = `/tscni-test-${process.pid}-${clusters}`
    const clusterConfigFile = join(dir, "cluster-config.json")
    const datastoreFlags = kube === undefined
      ? ["--etcd-endpoints", etcd!.endpoint, "--etcd-prefix", prefix]
      : ["--kubeconfig", kube.kubeconfig, "--cluster-config", clusterConfigFile]
    const clusterFlags = (node: TestNode) => [
      "--socket", node.socket,
      "--health-listen", `127.0.0.1:${HEALTH_PORT}`,
      ...datastoreFlags,
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
    return { etcd, kube, clusterConfigFile, prefix, nodes, outside, startAgent, agentCommand, probe, remove }
  } catch (error) {
    await remove()
    throw error
  }
}

/** The node's node file, as the agent wrote it. */
export const nodeFileOf = (node: TestNode): { readonly subnets: ReadonlyArray<string>; readonly mtu: number; readonly backend: string } =>
  JSON.parse(readFileSync(node.nodeFile, "utf8")) as { subnets: ReadonlyArray<string>; mtu: number; backend: string }

/** A pod on a node: its own namespace, attached by the compiled bridge plugin. */
export interface TestPod {
  readonly node: TestNode
  readonly netns: string
  readonly ip: string
  readonly containerId: string
  /** `cni del` of the attachment, as the runtime's teardown (the namespace stays until the test ends) */
  readonly detach: () => void
}

let podCount = 0

/** A bin dir under `dataDir` of links to the multicall `tscni`, as tscni-install lays one out: its plugins forward calls to the agent. */
const multicallLinks = (dataDir: string): string => {
  const dir = join(dataDir, "bin")
  if (existsSync(dir)) return dir
  mkdirSync(dir, { recursive: true })
  for (const name of readdirSync(BIN_DIR)) {
    if (name !== "cni" && name !== "tscni-install") symlinkSync(binary("tscni"), join(dir, name))
  }
  return dir
}

/**
 * A pod on `node`, made as the cluster issue asks: with the `cni` CLI (the runtime's half)
 * and the cluster's conflist, whose tscni-net reads the node file the node's agent wrote and
 * delegates to bridge + host-local on the node's subnet with the node's MTU. Its conflist,
 * result cache, saved delegates and IPAM store live in `dataDir`. With `k8s`, CNI_ARGS name
 * the pod as containerd does; with `viaAgent`, the plugins forward the calls to the node's
 * agent (which then enforces the pod's network policies before the ADD returns).
 */
export const makePod = (
  node: TestNode,
  dataDir: string,
  options: { readonly k8s?: { readonly namespace: string; readonly name: string }; readonly viaAgent?: boolean } = {}
): TestPod => {
  const netns = freshNetns()
  const base = join(dataDir, node.name)
  const confDir = join(base, "net.d")
  mkdirSync(confDir, { recursive: true })
  writeFileSync(join(confDir, "10-cluster.conflist"), JSON.stringify({
    cniVersion: "1.0.0",
    name: "cluster",
    plugins: [{ type: "tscni-net", nodeFile: node.nodeFile, dataDir: join(base, "delegates"), delegate: { bridge: "cni0", ipam: { dataDir: join(base, "ipam") } } }]
  }))
  const containerId = `pod-${process.pid}-${podCount++}`
  const binDir = options.viaAgent === true ? multicallLinks(dataDir) : BIN_DIR
  const cni = (command: "add" | "del") => {
    const args = options.k8s === undefined ? [] : ["--args", `IgnoreUnknown=1;K8S_POD_NAMESPACE=${options.k8s.namespace};K8S_POD_NAME=${options.k8s.name};K8S_POD_INFRA_CONTAINER_ID=${containerId}`]
    const run = Bun.spawnSync(["ip", "netns", "exec", node.netns, binary("cni"), command, "cluster", netns.path, ...(command === "add" ? ["--json"] : []),
      "--conf-dir", confDir, "--bin-dir", binDir, "--cache-dir", join(base, "cache"), "--container-id", containerId, ...args], {
      env: { ...process.env, ...(options.viaAgent === true ? { TSCNI_DAEMON_SOCKET: node.socket } : {}) }
    })
    if (run.exitCode !== 0) throw new Error(`cni ${command} on ${node.name}: ${run.stdout.toString()}${run.stderr.toString()}`)
    return run.stdout.toString()
  }
  const result = JSON.parse(cni("add")) as { ips: Array<{ address: string }> }
  return { node, netns: netns.name, ip: result.ips[0]!.address.split("/")[0]!, containerId, detach: () => void cni("del") }
}

/** Whether one ping from `from` to `to` is answered (5 s patience: a lost reply, not slowness, fails it). */
export const pings = (from: TestPod, to: TestPod, extra: ReadonlyArray<string> = []) =>
  Bun.spawnSync(["ip", "netns", "exec", from.netns, "ping", "-c", "1", "-W", "5", ...extra, to.ip])

/** The source address a TCP server in `to` sees for a connection from `from` (NAT would show the node's). */
export const sourceSeen = async (from: { readonly netns: string }, to: { readonly netns: string; readonly ip: string }): Promise<string> => {
  const server = Bun.spawn(["ip", "netns", "exec", to.netns, process.execPath, "-e", `
    Bun.listen({ hostname: "${to.ip.includes(":") ? "::" : "0.0.0.0"}", port: 7070, socket: { open(s) { s.write(s.remoteAddress + "\\n"); s.end() }, data() {} } })
    console.log("listening")`], { stdout: "pipe", stderr: "ignore" })
  try {
    const first = await server.stdout.getReader().read()
    if (!new TextDecoder().decode(first.value).includes("listening")) throw new Error("the server did not start")
    const client = Bun.spawnSync(["ip", "netns", "exec", from.netns, process.execPath, "-e", `
      await Bun.connect({ hostname: "${to.ip}", port: 7070, socket: { data(s, d) { process.stdout.write(new TextDecoder().decode(d)) }, close() { process.exit(0) }, error() { process.exit(1) } } })`], {
      timeout: 10_000
    })
    return client.stdout.toString().trim()
  } finally {
    server.kill("SIGKILL")
    await server.exited
  }
}

/** The node's routes of tscni's protocol (116), both families, as `dst via gateway dev link`. */
export const agentRoutes = (node: TestNode): Array<string> =>
  ["-4", "-6"].flatMap((family) => JSON.parse(ip(family, "-j", "-n", node.netns, "route", "show", "proto", "116")) as Array<{ dst: string; gateway?: string; dev?: string }>)
    .map((route) => `${route.dst} via ${route.gateway ?? "-"} dev ${route.dev ?? "-"}`)
    .sort()
