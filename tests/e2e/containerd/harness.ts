/**
 * A node for the containerd e2e: a network namespace standing in for the node, Debian's
 * containerd (1.6) with runc started inside it with a private config, root, state and
 * socket (nothing global changes; the machine's own containerd, if any, is untouched),
 * `bin_dir` = tscni installed by `tscni-install` into a temporary dir, `conf_dir` = a
 * temporary dir with the test's conflist, and the sandbox image built from Debian's
 * busybox-static and imported under exactly the `sandbox_image` name, so nothing is pulled.
 *
 * containerd runs under `nsenter --net` (not `ip netns exec`, which remounts /sys and
 * hides the cgroup mounts runc needs), so the plugins it runs change only the node
 * namespace. `restrict_oom_score_adj`: root here lacks CAP_SYS_RESOURCE, and the sandbox's
 * oom_score_adj of -998 would make runc fail ("can't get final child's PID from pipe").
 * Pod namespaces are containerd's (`/var/run/netns/cni-*`), removed by RemovePodSandbox;
 * `stop` removes every sandbox left, then ends containerd and its shims by PID.
 */
import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, symlinkSync, writeFileSync } from "node:fs"
import { tmpdir } from "node:os"
import { join, resolve } from "node:path"
import { type CriClient, criClient } from "./cri.ts"
import { buildSandboxImage, SANDBOX_IMAGE } from "./image.ts"

export const BIN = resolve(import.meta.dir, "..", "..", "..", "dist", "bin")

export interface ContainerdNode {
  readonly netns: string
  readonly dir: string
  readonly socket: string
  readonly cri: CriClient
  /** the file the recording plugin appends each call to: one JSON line of CNI_COMMAND, CNI_ARGS and the config's cniVersion */
  readonly argsLog: string
  /** the IPAM store of the test network */
  readonly ipamDir: string
  /** tscni installed here (bin_dir) */
  readonly binDir: string
  readonly confDir: string
  /** the agent's health port when one serves the calls */
  readonly agentMetrics: (() => string) | undefined
  /** writes the conflist containerd uses (the first in conf_dir); dualStack adds an IPv6 range set */
  readonly setConflist: (cniVersion: string, dualStack?: boolean) => void
  /** stops containerd (SIGTERM, or SIGKILL), and starts it again */
  readonly stopContainerd: (signal: "SIGTERM" | "SIGKILL") => Promise<void>
  readonly startContainerd: () => Promise<void>
  readonly log: () => string
  readonly stop: () => Promise<void>
}

const run = (argv: ReadonlyArray<string>) => {
  const out = Bun.spawnSync([...argv], { stderr: "pipe", stdout: "pipe" })
  if (out.exitCode !== 0) throw new Error(`${argv.join(" ")}: ${out.stderr.toString()}${out.stdout.toString()}`)
  return out.stdout.toString()
}

/**
 * A plugin for the end of the chain that records what the runtime passed (CNI_COMMAND and
 * CNI_ARGS, one line per call) and hands the previous result on, as a chained plugin must:
 * the test observes containerd's calls without tscni's code. A Bun script (this Bun). While
 * the file `gate` exists, an ADD says so (`entered`) and waits: the test holds containerd
 * in the middle of RunPodSandbox, after tscni's plugins ran, to kill it right there.
 */
const recorderScript = (log: string, gate: string, entered: string) => `#!${process.execPath}
import { appendFileSync, existsSync, writeFileSync } from "node:fs"
const command = process.env.CNI_COMMAND ?? ""
const stdin = command === "VERSION" ? "{}" : await Bun.stdin.text()
const conf = JSON.parse(stdin || "{}")
appendFileSync(${JSON.stringify(log)}, JSON.stringify({ command, args: process.env.CNI_ARGS ?? "", netns: process.env.CNI_NETNS ?? "", cniVersion: conf.cniVersion }) + "\\n")
if (command === "ADD" && existsSync(${JSON.stringify(gate)})) {
  writeFileSync(${JSON.stringify(entered)}, process.env.CNI_NETNS ?? "")
  while (existsSync(${JSON.stringify(gate)})) await Bun.sleep(20)
}
if (command === "VERSION") console.log(JSON.stringify({ cniVersion: "1.0.0", supportedVersions: ["0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0"] }))
else if (command === "ADD") console.log(JSON.stringify(conf.prevResult))
`

let nodes = 0

/** Starts a node: namespace, install, image, containerd. `agentSocket`: plugins forward calls to a tscni agent there. */
export const startNode = async (
  options: {
    readonly withAgent?: boolean
    /** Debian's reference plugins (/usr/lib/cni) instead of tscni, for the bench */
    readonly reference?: boolean
    /** the recording plugin at the end of the chain (default true; the bench leaves it out) */
    readonly recorder?: boolean
    /** a node namespace that exists already (a cluster's node): used, never removed */
    readonly netns?: string
    /** the network's first plugin instead of bridge + host-local (e.g. tscni-net, for a cluster node) */
    readonly firstPlugin?: (ipamDir: string) => Record<string, unknown>
  } = {}
): Promise<ContainerdNode> => {
  const ownNetns = options.netns === undefined
  const netns = options.netns ?? `tscni-ctrd-${process.pid}-${nodes++}`
  const dir = mkdtempSync(join(tmpdir(), "tscni-containerd-"))
  if (ownNetns) {
    run(["ip", "netns", "add", netns])
    run(["ip", "-n", netns, "link", "set", "lo", "up"])
  }
  let containerd: Bun.Subprocess | undefined
  let agent: Bun.Subprocess | undefined
  const agentSocket = options.withAgent === true ? join(dir, "agent.sock") : undefined
  const socket = join(dir, "containerd.sock")
  const binDir = join(dir, "bin")
  const confDir = join(dir, "net.d")
  const argsLog = join(dir, "cni-args.log")
  const ipamDir = join(dir, "ipam")
  mkdirSync(confDir, { recursive: true })
  if (options.reference === true) {
    mkdirSync(binDir, { recursive: true })
    for (const plugin of ["bridge", "host-local", "portmap", "bandwidth", "loopback"]) symlinkSync(`/usr/lib/cni/${plugin}`, join(binDir, plugin))
  } else {
    run([join(BIN, "tscni-install"), "--source", BIN, "--bin-dir", binDir, "--conf-dir", confDir, "--mode", "multicall", "--no-conflist"])
  }
  const recorder = options.recorder !== false
  if (recorder) writeFileSync(join(binDir, "record-args"), recorderScript(argsLog, join(dir, "gate"), join(dir, "entered")), { mode: 0o755 })
  const setConflist = (cniVersion: string, dualStack = false) =>
    writeFileSync(join(confDir, "10-tscni.conflist"), JSON.stringify({
      cniVersion,
      name: "tscni-cri",
      plugins: [
        options.firstPlugin?.(ipamDir) ??
          { type: "bridge", bridge: "cni0", isGateway: true, isDefaultGateway: true, ipMasq: true, hairpinMode: true, ipam: { type: "host-local", ranges: [[{ subnet: "10.88.0.0/24" }], ...(dualStack ? [[{ subnet: "fd00:88::/64" }]] : [])], dataDir: ipamDir } },
        { type: "portmap", capabilities: { portMappings: true } },
        { type: "bandwidth", capabilities: { bandwidth: true } },
        ...(recorder ? [{ type: "record-args" }] : [])
      ]
    }, null, 2))
  setConflist("1.0.0")
  writeFileSync(join(dir, "config.toml"), [
    "version = 2",
    `root = "${dir}/root"`,
    `state = "${dir}/state"`,
    `disabled_plugins = ["io.containerd.snapshotter.v1.aufs", "io.containerd.snapshotter.v1.btrfs", "io.containerd.snapshotter.v1.zfs", "io.containerd.snapshotter.v1.devmapper"]`,
    "[grpc]",
    `  address = "${socket}"`,
    "[ttrpc]",
    `  address = "${socket}.ttrpc"`,
    `[plugins."io.containerd.grpc.v1.cri"]`,
    `  sandbox_image = "${SANDBOX_IMAGE}"`,
    "  restrict_oom_score_adj = true",
    `  stream_server_address = "127.0.0.1"`,
    `  stream_server_port = "0"`,
    `  [plugins."io.containerd.grpc.v1.cri".containerd]`,
    `    snapshotter = "native"`,
    `    default_runtime_name = "runc"`,
    `    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]`,
    `      runtime_type = "io.containerd.runc.v2"`,
    `      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]`,
    "        SystemdCgroup = false",
    `  [plugins."io.containerd.grpc.v1.cri".cni]`,
    `    bin_dir = "${binDir}"`,
    `    conf_dir = "${confDir}"`,
    "    max_conf_num = 1",
    `[plugins."io.containerd.internal.v1.opt"]`,
    `  path = "${dir}/opt"`,
    ""
  ].join("\n"))
  let log = ""
  const startContainerd = async () => {
    const child = Bun.spawn(["nsenter", `--net=/var/run/netns/${netns}`, "containerd", "--config", join(dir, "config.toml")], {
      stdout: "ignore",
      stderr: "pipe",
      // the plugins containerd runs forward their calls to this socket (or find no agent there)
      env: { ...process.env, TSCNI_DAEMON_SOCKET: agentSocket ?? join(dir, "no-agent.sock") }
    })
    containerd = child
    void (async () => {
      const decoder = new TextDecoder()
      for await (const chunk of child.stderr) log += decoder.decode(chunk, { stream: true })
    })()
    // ready when its CRI answers
    for (let attempt = 0; ; attempt++) {
      if (existsSync(socket)) {
        try {
          await cri.call("version", { version: "v1" })
          return
        } catch {
          // not serving yet
        }
      }
      if (child.exitCode !== null || attempt > 300) throw new Error(`containerd did not start:\n${log.slice(-3000)}`)
      await Bun.sleep(50)
    }
  }
  const cri = criClient(socket)
  const stopContainerd = async (signal: "SIGTERM" | "SIGKILL") => {
    containerd?.kill(signal)
    await containerd?.exited
    containerd = undefined
  }
  /** The runc shims of this containerd (they outlive it by design): by their -address argument. */
  const shims = (): Array<number> =>
    readdirSync("/proc").filter((entry) => /^\d+$/.test(entry)).flatMap((pid) => {
      try {
        return readFileSync(`/proc/${pid}/cmdline`, "utf8").includes(socket) && Number(pid) !== containerd?.pid ? [Number(pid)] : []
      } catch {
        return []
      }
    })
  const stop = async () => {
    try {
      if (containerd !== undefined) {
        const { items } = await cri.call("listPodSandbox", {})
        for (const sandbox of items as Array<{ id: string }>) {
          await cri.call("stopPodSandbox", { podSandboxId: sandbox.id }).catch(() => undefined)
          await cri.call("removePodSandbox", { podSandboxId: sandbox.id }).catch(() => undefined)
        }
      }
    } finally {
      cri.close()
      await stopContainerd("SIGKILL")
      agent?.kill("SIGKILL")
      await agent?.exited
      for (const pid of shims()) process.kill(pid, "SIGKILL")
      // pod namespaces this containerd made and, killed or failed midway, did not remove:
      // those its plugins were called with (the recording plugin's log names them)
      if (existsSync(argsLog)) {
        for (const line of readFileSync(argsLog, "utf8").split("\n")) {
          const path = line === "" ? "" : String((JSON.parse(line) as { netns?: string }).netns ?? "")
          if (path.startsWith("/var/run/netns/cni-") && existsSync(path)) Bun.spawnSync(["ip", "netns", "delete", path.slice("/var/run/netns/".length)])
        }
      }
      if (ownNetns) Bun.spawnSync(["ip", "netns", "delete", netns])
      // containerd's root holds read-only snapshot files: remove them anyway
      rmSync(dir, { recursive: true, force: true })
    }
  }
  try {
    if (agentSocket !== undefined) {
      // the installed binary (the plugins' own build), in the node's namespace, as the DaemonSet runs it
      agent = Bun.spawn(["nsenter", `--net=/var/run/netns/${netns}`, join(binDir, "tscni"), "agent", "--socket", agentSocket, "--health-listen", "127.0.0.1:9402"], { stdout: "ignore", stderr: "ignore" })
      for (let attempt = 0; !existsSync(agentSocket); attempt++) {
        if (attempt > 200) throw new Error("the tscni agent did not start")
        await Bun.sleep(25)
      }
    }
    await startContainerd()
    const image = join(dir, "sandbox.tar")
    buildSandboxImage(image)
    run(["ctr", "--address", socket, "-n", "k8s.io", "images", "import", image])
  } catch (error) {
    await stop()
    throw error
  }
  const agentMetrics = agentSocket === undefined
    ? undefined
    : () => Bun.spawnSync(["nsenter", `--net=/var/run/netns/${netns}`, "curl", "-s", "http://127.0.0.1:9402/metrics"]).stdout.toString()
  return { netns, dir, socket, cri, argsLog, ipamDir, binDir, confDir, agentMetrics, setConflist, stopContainerd, startContainerd, log: () => log, stop }
}

/** The pod sandbox config kubelet sends (the fields containerd's CRI plugin reads for networking). */
export const sandboxConfig = (name: string, extra: { readonly portMappings?: ReadonlyArray<Record<string, unknown>>; readonly annotations?: Record<string, string> } = {}) => ({
  metadata: { name, uid: `uid-${name}`, namespace: "default", attempt: 0 },
  hostname: name,
  logDirectory: join(tmpdir(), `tscni-cri-logs-${name}`),
  portMappings: extra.portMappings ?? [],
  annotations: extra.annotations ?? {},
  linux: { securityContext: { namespaceOptions: { network: "POD", pid: "CONTAINER", ipc: "POD" } } }
})

/** A running sandbox's IP and its network namespace path (from PodSandboxStatus, verbose). */
export const sandboxNetwork = async (cri: CriClient, id: string) => {
  const status = await cri.call("podSandboxStatus", { podSandboxId: id, verbose: true })
  const info = JSON.parse(status.info?.info ?? "{}") as { runtimeSpec?: { linux?: { namespaces?: Array<{ type: string; path?: string }> } } }
  const netnsPath = info.runtimeSpec?.linux?.namespaces?.find((ns) => ns.type === "network")?.path ?? ""
  return { ip: String(status.status.network.ip), additional: (status.status.network.additionalIps as Array<{ ip: string }>).map((p) => p.ip), netnsPath, state: String(status.status.state) }
}
