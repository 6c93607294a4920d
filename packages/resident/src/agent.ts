/**
 * `tscni agent`: the one tscni process of a node. Today it serves the plugin calls the
 * multicall binary forwards (./daemon.ts), warm, and answers health probes and metric
 * scrapes over HTTP; without it every call runs in its own process, correct and complete.
 * SIGTERM (a restart, an upgrade) lets the calls it holds finish, then it exits.
 */
import { hostname } from "node:os"
import { Counter, Gauge, Histogram, Registry } from "prom-client"
import type { NodeStatus } from "@tscni/cluster/nodeAgent"
import type { ClusterOptions, DatastoreArgs, PolicyStatus, RunningCluster } from "@tscni/cluster/run"
import { parseEtcdEndpoints } from "@tscni/cluster/endpoints"
import { DEFAULT_NODE_FILE } from "@tscni/cluster/nodeFile"
import { splitCniArgs } from "@tscni/spec/cniArgs"
import { BUILD_ID, type ForwardedCall } from "./protocol.ts"
import { DEFAULT_MAX_RUNNING_CALLS, DEFAULT_MEMORY_SOFT_LIMIT_MB, defaultSocketPath, type PluginLoader, startDaemon } from "./daemon.ts"

/** Where probes and scrapes are answered unless `--health-listen` says otherwise (per network namespace). */
export const DEFAULT_HEALTH_LISTEN = "127.0.0.1:9402"

/** Where the cluster lives in etcd unless `--etcd-prefix` says otherwise. */
export const DEFAULT_ETCD_PREFIX = "/tscni/network"
/** An hour: a dead node's routes go within it; a restart or a short reboot finds its lease still there. */
export const DEFAULT_LEASE_TTL_SECONDS = 3600
/** flannel's host-gw re-checks its routes every 10 s too */
export const DEFAULT_RESYNC_SECONDS = 10

export const USAGE = `usage: tscni agent [--socket PATH] [--health-listen HOST:PORT | --health-listen off] [--max-running-calls N]
                  [--memory-soft-limit MB]
                  [--etcd-endpoints URL[,URL…] [--etcd-prefix PREFIX] [--lease-ttl SECONDS]
                   | --datastore kubernetes [--kubeconfig PATH] --cluster-config PATH]
                  [--node NAME] [--node-file PATH] [--write-conflist PATH] [--iface NAME] [--public-ip IP]
                  [--public-ipv6 IP] [--resync-interval SECONDS]
       tscni agent leave --etcd-endpoints URL[,URL…] [--node NAME] [--etcd-prefix PREFIX]

The node's tscni process: serves the calls of the multicall plugin binary (tscni and its
links in the CNI bin dir) warm, over a unix socket, and answers HTTP probes. With a
datastore it is also the node's part of the cluster network: it leases the node's pod
subnet(s) and writes them to the node file.

  --socket PATH              unix socket the plugins forward their calls to
                             (default: $TSCNI_DAEMON_SOCKET, else /run/tscni/daemon.sock)
  --health-listen HOST:PORT  /healthz (alive), /readyz (serving calls), /metrics (Prometheus)
                             (default: ${DEFAULT_HEALTH_LISTEN}; "off": none)
  --max-running-calls N      calls run at once; the others wait their turn
                             (default: ${DEFAULT_MAX_RUNNING_CALLS})
  --memory-soft-limit MB     above this resident memory, each finished call asks for a garbage
                             collection (run beside the calls); 0: never (default: ${DEFAULT_MEMORY_SOFT_LIMIT_MB})
  --etcd-endpoints URLS      the etcd v3 datastore (comma-separated http:// URLs); without a
                             datastore the agent only serves calls
  --datastore kubernetes     the Kubernetes API instead: the node's subnets are its
                             spec.podCIDRs, peers are the Node objects (annotated by their agents)
  --kubeconfig PATH          credentials for it (default: the pod's service account; giving
                             --kubeconfig alone selects the kubernetes datastore)
  --cluster-config PATH      with kubernetes: the cluster network's JSON (as etcd's PREFIX/config)
  --service-account-dir PATH with kubernetes: where the service account's token and ca.crt are
                             (default /var/run/secrets/kubernetes.io/serviceaccount)
  --write-conflist PATH      write the cluster conflist (tscni-net, portmap, bandwidth) there once
                             the node holds its subnet, so the runtime waits for the network
  --node NAME                this node's name in the datastore (default: the host name)
  --etcd-prefix PREFIX       where the cluster lives in etcd: PREFIX/config, PREFIX/subnets/…
                             (default: ${DEFAULT_ETCD_PREFIX})
  --node-file PATH           where the node's subnet(s), networks and MTU are written
                             (default: ${DEFAULT_NODE_FILE})
  --iface NAME               the underlay interface (default: that of the default route)
  --public-ip IP             the address peers reach this node at (default: the underlay's)
  --public-ipv6 IP           its IPv6 address, for host-gw routes to IPv6 pod subnets (default:
                             the underlay's first global IPv6 address, if any)
  --lease-ttl SECONDS        a lease not renewed for this long expires and its subnet is
                             freed (default: ${DEFAULT_LEASE_TTL_SECONDS})
  --resync-interval SECONDS  how often the routes to the peers are reconciled even when
                             nothing changed, repairing hand edits (default: ${DEFAULT_RESYNC_SECONDS})
  --help                     this text

\`tscni agent leave\` deletes the node's leases (its reservations stay), so every peer
removes its routes to the node; stop the node's agent first, or it claims a subnet again.

Without the agent every plugin call runs in its own process, as the runtime started it.
\`tscni daemon\` is the same command (its older name).
`

/** The cluster side's options (present when a datastore is given). */
export type ClusterArgs = ClusterOptions

export interface AgentOptions {
  readonly socket: string
  /** undefined: no HTTP endpoint */
  readonly health: { readonly hostname: string; readonly port: number } | undefined
  readonly maxRunningCalls: number
  /** MB of resident memory above which finished calls ask for a collection; 0: off */
  readonly memorySoftLimitMb: number
  /** undefined: no datastore, the agent only serves calls */
  readonly cluster: ClusterArgs | undefined
}

const FLAGS = [
  "--socket",
  "--health-listen",
  "--max-running-calls",
  "--memory-soft-limit",
  "--etcd-endpoints",
  "--node",
  "--etcd-prefix",
  "--node-file",
  "--iface",
  "--public-ip",
  "--lease-ttl",
  "--resync-interval",
  "--datastore",
  "--kubeconfig",
  "--cluster-config",
  "--service-account-dir",
  "--public-ipv6",
  "--write-conflist"
]

/** The flags that make sense without a datastore (serving calls); any other needs one. */
const CALL_FLAGS = new Set(["--socket", "--health-listen", "--max-running-calls", "--memory-soft-limit"])

/** Which datastore the flags name, checked; undefined when none (then no cluster flag may be given). */
const parseDatastore = (values: ReadonlyMap<string, string>): DatastoreArgs | undefined | { readonly error: string } => {
  const endpoints = values.get("--etcd-endpoints")
  const kubeconfig = values.get("--kubeconfig")
  const chosen = values.get("--datastore") ?? (endpoints !== undefined ? "etcd" : kubeconfig !== undefined ? "kubernetes" : undefined)
  if (chosen === undefined) {
    const stray = [...values.keys()].find((flag) => !CALL_FLAGS.has(flag))
    return stray === undefined ? undefined : { error: `${stray} needs a datastore (--etcd-endpoints, or --datastore kubernetes)` }
  }
  if (chosen === "etcd") {
    if (endpoints === undefined) return { error: "--datastore etcd needs --etcd-endpoints" }
    if (kubeconfig !== undefined || values.has("--cluster-config")) return { error: "--kubeconfig and --cluster-config are for --datastore kubernetes, not etcd" }
    const parsed = parseEtcdEndpoints(endpoints)
    if ("bad" in parsed) return { error: `--etcd-endpoints: '${parsed.bad}' is not an http(s)://HOST:PORT URL` }
    const urls = parsed.urls
    const prefix = (values.get("--etcd-prefix") ?? DEFAULT_ETCD_PREFIX).replace(/\/+$/, "")
    if (!prefix.startsWith("/")) return { error: `--etcd-prefix: '${prefix}' must start with /` }
    const ttl = values.get("--lease-ttl") ?? String(DEFAULT_LEASE_TTL_SECONDS)
    if (!/^\d{1,7}$/.test(ttl) || Number(ttl) < 2) return { error: `--lease-ttl: '${ttl}' is not a whole number of seconds from 2 to 9999999` }
    return { type: "etcd", endpoints: urls, prefix, leaseTtlSeconds: Number(ttl) }
  }
  if (chosen !== "kubernetes") return { error: `--datastore: '${chosen}' is not etcd or kubernetes` }
  for (const flag of ["--etcd-endpoints", "--etcd-prefix", "--lease-ttl"]) {
    if (values.has(flag)) return { error: `${flag} is for --datastore etcd; with kubernetes the subnets are the nodes' spec.podCIDRs` }
  }
  const clusterConfig = values.get("--cluster-config")
  if (clusterConfig === undefined) return { error: "--datastore kubernetes needs --cluster-config PATH (the cluster network's JSON, e.g. a mounted ConfigMap)" }
  const serviceAccountDir = values.get("--service-account-dir")
  if (serviceAccountDir !== undefined && kubeconfig !== undefined) return { error: "--service-account-dir and --kubeconfig are two ways to the same credentials: give one" }
  for (const [flag, path] of [["--cluster-config", clusterConfig], ["--kubeconfig", kubeconfig], ["--service-account-dir", serviceAccountDir]] as const) {
    if (path !== undefined && !path.startsWith("/")) return { error: `${flag}: '${path}' is not an absolute path` }
  }
  return { type: "kubernetes", kubeconfig, clusterConfig, serviceAccountDir }
}

/** The cluster flags, checked; undefined without a datastore. */
const parseClusterArgs = (values: ReadonlyMap<string, string>): ClusterArgs | undefined | { readonly error: string } => {
  const datastore = parseDatastore(values)
  if (datastore === undefined || "error" in datastore) return datastore
  const node = values.get("--node") ?? hostname()
  if (!/^[A-Za-z0-9]([A-Za-z0-9._-]{0,251}[A-Za-z0-9])?$/.test(node)) return { error: `--node: '${node}' is not a node name (letters, digits, '.', '_', '-')` }
  const nodeFile = values.get("--node-file") ?? DEFAULT_NODE_FILE
  if (!nodeFile.startsWith("/")) return { error: `--node-file: '${nodeFile}' is not an absolute path` }
  const conflist = values.get("--write-conflist")
  if (conflist !== undefined && !conflist.startsWith("/")) return { error: `--write-conflist: '${conflist}' is not an absolute path` }
  const resync = values.get("--resync-interval") ?? String(DEFAULT_RESYNC_SECONDS)
  if (!/^\d{1,5}$/.test(resync) || Number(resync) < 1) return { error: `--resync-interval: '${resync}' is not a whole number of seconds from 1 to 99999` }
  const iface = values.get("--iface")
  if (iface !== undefined && !/^[^\s/]{1,15}$/.test(iface)) return { error: `--iface: '${iface}' is not an interface name` }
  const publicIp = values.get("--public-ip")
  if (publicIp !== undefined && !/^\d{1,3}(\.\d{1,3}){3}$/.test(publicIp)) return { error: `--public-ip: '${publicIp}' is not an IPv4 address` }
  const publicIpv6 = values.get("--public-ipv6")
  if (publicIpv6 !== undefined && !/^[0-9a-fA-F:]+$/.test(publicIpv6)) return { error: `--public-ipv6: '${publicIpv6}' is not an IPv6 address` }
  return { datastore, node, nodeFile, conflist, iface, publicIp, publicIpv6, resyncSeconds: Number(resync) }
}

/** The options, or the reason they are wrong; `help` when help was asked for. */
export const parseAgentArgs = (args: ReadonlyArray<string>): AgentOptions | "help" | { readonly error: string } => {
  const values = new Map<string, string>()
  for (let i = 0; i < args.length; i++) {
    const flag = args[i]!
    if (flag === "--help" || flag === "-h") return "help"
    const value = args[i + 1]
    if (!FLAGS.includes(flag)) return { error: `unknown argument '${flag}'` }
    if (value === undefined || value === "") return { error: `${flag} needs a value` }
    values.set(flag, value)
    i++
  }
  const socket = values.get("--socket") ?? defaultSocketPath()
  const health = values.get("--health-listen") ?? DEFAULT_HEALTH_LISTEN
  const maxRunning = values.get("--max-running-calls") ?? String(DEFAULT_MAX_RUNNING_CALLS)
  if (!socket.startsWith("/")) return { error: `--socket: '${socket}' is not an absolute path` }
  const maxRunningCalls = Number(maxRunning)
  if (!/^\d{1,4}$/.test(maxRunning) || maxRunningCalls < 1) return { error: `--max-running-calls: '${maxRunning}' is not a whole number from 1 to 9999` }
  const softLimit = values.get("--memory-soft-limit") ?? String(DEFAULT_MEMORY_SOFT_LIMIT_MB)
  if (!/^\d{1,6}$/.test(softLimit)) return { error: `--memory-soft-limit: '${softLimit}' is not a whole number of MB (0: off)` }
  const memorySoftLimitMb = Number(softLimit)
  const cluster = parseClusterArgs(values)
  if (cluster !== undefined && "error" in cluster) return cluster
  if (health === "off") return { socket, health: undefined, maxRunningCalls, memorySoftLimitMb, cluster }
  const match = /^(.+):(\d{1,5})$/.exec(health)
  const port = Number(match?.[2])
  if (match === null || port < 1 || port > 65535) return { error: `--health-listen: '${health}' is not HOST:PORT (or off)` }
  return { socket, health: { hostname: match[1]!.replace(/^\[(.*)\]$/, "$1"), port }, maxRunningCalls, memorySoftLimitMb, cluster }
}

const log = (line: string) => process.stderr.write(`tscni agent: ${line}\n`)

/** The agent's metrics (served calls, their latency, fallbacks, build), in one registry. */
const agentMetrics = () => {
  const registry = new Registry()
  const calls = new Counter({
    name: "tscni_agent_calls_total",
    help: "Plugin calls the agent served, by plugin, CNI command and exit code.",
    labelNames: ["plugin", "command", "exit_code"],
    registers: [registry]
  })
  const seconds = new Histogram({
    name: "tscni_agent_call_duration_seconds",
    help: "Time the agent took to run a served plugin call.",
    labelNames: ["plugin", "command"],
    buckets: [0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5],
    registers: [registry]
  })
  const fallbacks = new Counter({
    name: "tscni_agent_fallbacks_total",
    help: "Calls the agent sent back to run in their own process (another build, another view of the host, stopping).",
    registers: [registry]
  })
  const ready = new Gauge({ name: "tscni_agent_ready", help: "1 while the agent serves calls.", registers: [registry] })
  const running = new Gauge({ name: "tscni_agent_calls_running", help: "Calls the agent runs now.", registers: [registry] })
  const waiting = new Gauge({ name: "tscni_agent_calls_waiting", help: "Calls waiting for a slot (--max-running-calls).", registers: [registry] })
  new Gauge({ name: "tscni_agent_build_info", help: "The agent's build.", labelNames: ["build"], registers: [registry] }).set({ build: BUILD_ID }, 1)
  return { registry, calls, seconds, fallbacks, ready, running, waiting }
}

/** The cluster side's metrics, registered only when a datastore is configured. */
const clusterMetrics = (registry: Registry) => {
  const leased = new Gauge({ name: "tscni_agent_cluster_ready", help: "1 while the node holds its subnet(s) and the node file says so.", registers: [registry] })
  const subnets = new Gauge({ name: "tscni_agent_subnet_info", help: "The node's leased or reserved pod subnets.", labelNames: ["subnet"], registers: [registry] })
  const claims = new Counter({ name: "tscni_agent_lease_claims_total", help: "Subnet claims made (new, kept after a restart, or reserved).", registers: [registry] })
  const losses = new Counter({ name: "tscni_agent_lease_losses_total", help: "Times the node's lease or claim was lost and claimed again.", registers: [registry] })
  const errors = new Counter({ name: "tscni_agent_reconcile_errors_total", help: "Datastore and reconcile failures (each retried).", registers: [registry] })
  const peers = new Gauge({ name: "tscni_agent_peers", help: "Peer subnets the node routes to.", registers: [registry] })
  const kernelChanges = new Counter({ name: "tscni_agent_kernel_changes_total", help: "Kernel objects the peer reconciles added, changed or removed (a restart that found everything right adds none).", registers: [registry] })
  const unreachable = new Gauge({ name: "tscni_agent_unreachable_peers", help: "Peers the backend cannot reach (host-gw: not on the underlay's L2 segment).", registers: [registry] })
  let last: NodeStatus | undefined
  return (status: NodeStatus) => {
    leased.set(status.ready ? 1 : 0)
    peers.set(status.peers)
    unreachable.set(status.unreachable.length)
    subnets.reset()
    for (const subnet of status.subnets) subnets.set({ subnet }, 1)
    claims.inc(status.claims - (last?.claims ?? 0))
    losses.inc(status.losses - (last?.losses ?? 0))
    errors.inc(status.errors - (last?.errors ?? 0))
    kernelChanges.inc(status.changes - (last?.changes ?? 0))
    last = status
  }
}

/** `tscni agent leave`: the node's leases deleted, what was released printed. */
const leave = async (args: ReadonlyArray<string>): Promise<void> => {
  const options = parseAgentArgs(args)
  if (options === "help") return void process.stdout.write(USAGE)
  if ("error" in options || options.cluster?.datastore.type !== "etcd") {
    process.stderr.write(`tscni agent leave: ${"error" in options ? options.error : "--etcd-endpoints is required (in Kubernetes a node leaves when its Node object is deleted)"}\n\n${USAGE}`)
    process.exitCode = 2
    return
  }
  const { leaveCluster } = await import("@tscni/cluster/run")
  const released = await leaveCluster({ ...options.cluster.datastore, node: options.cluster.node })
  process.stdout.write(`node ${options.cluster.node} left: ${released.length === 0 ? "it held no lease" : `released ${released.join(", ")}`}\n`)
}

/** How long a stopping agent waits for its cluster side (the datastore may be out of reach). */
const CLUSTER_STOP_MS = 3000

/** Starts the cluster side (loaded only now: an agent without a datastore never loads it). */
const startClusterSide = async (args: ClusterArgs, registry: Registry, onStatus: (status: NodeStatus) => void) => {
  const { startCluster } = await import("@tscni/cluster/run")
  const record = clusterMetrics(registry)
  const where = args.datastore.type === "etcd"
    ? `etcd ${args.datastore.endpoints.join(",")}, prefix ${args.datastore.prefix}`
    : `kubernetes (${args.datastore.kubeconfig ?? "in-cluster credentials"}), cluster config ${args.datastore.clusterConfig}`
  log(`cluster: node ${args.node}, ${where}`)
  return startCluster(args, (status) => {
    record(status)
    onStatus(status)
  }, policyMetrics(registry))
}

/** The policy enforcement's metrics; the applied revision is what tests and operators wait on. */
const policyMetrics = (registry: Registry) => {
  const revision = new Gauge({ name: "tscni_policy_applied_revision", help: "The datastore revision the node's policy table reflects (every change up to it is enforced).", registers: [registry] })
  const policies = new Gauge({ name: "tscni_policy_policies", help: "NetworkPolicies enforced.", registers: [registry] })
  const localPods = new Gauge({ name: "tscni_policy_local_pods", help: "Pods of this node known to policy enforcement.", registers: [registry] })
  const rejected = new Gauge({ name: "tscni_policy_rejected_objects", help: "Datastore objects that could not be decoded, so are not enforced (see the log).", registers: [registry] })
  return (status: PolicyStatus) => {
    revision.set(Number(status.appliedRevision))
    policies.set(status.policies)
    localPods.set(status.localPods)
    rejected.set(status.rejected.length)
  }
}

/** `K8S_POD_NAMESPACE` and `K8S_POD_NAME` from CNI_ARGS, as containerd and CRI-O pass them. */
const podOfArgs = (cniArgs: string | undefined): { readonly namespace: string; readonly name: string } | undefined => {
  const split = splitCniArgs(cniArgs ?? "")
  const pairs = new Map("pairs" in split ? split.pairs : [])
  const namespace = pairs.get("K8S_POD_NAMESPACE")
  const name = pairs.get("K8S_POD_NAME")
  return namespace === undefined || name === undefined || namespace === "" || name === "" ? undefined : { namespace, name }
}

/** The plugin whose ADD makes a cluster pod's addresses: the policy enforcement hears of those. */
const CLUSTER_PLUGIN = "tscni-net"

/**
 * After a served tscni-net ADD of a Kubernetes pod: the pod is enforced before the runtime
 * hears of it; when that fails, why (the daemon undoes the ADD and answers an error, so a pod
 * never runs unenforced). After a DEL: its enforcement and endpoint go (a failure is only
 * logged: DEL succeeds).
 */
const enforceServedCall = (cluster: () => RunningCluster | undefined) =>
async (call: ForwardedCall, outcome: { readonly stdout: string; readonly exitCode: number }): Promise<string | undefined> => {
  const policy = cluster()?.policy
  if (policy === undefined || call.plugin !== CLUSTER_PLUGIN || outcome.exitCode !== 0) return undefined
  const containerID = call.env.CNI_CONTAINERID ?? ""
  const forget = () => policy.detached(containerID).catch((error: unknown) => log(`policy: forgetting ${containerID}: ${error instanceof Error ? error.message : String(error)}`))
  if (call.env.CNI_COMMAND === "DEL") {
    await forget()
    return undefined
  }
  const pod = podOfArgs(call.env.CNI_ARGS)
  if (call.env.CNI_COMMAND !== "ADD" || pod === undefined) return undefined
  const result = JSON.parse(outcome.stdout) as { ips?: ReadonlyArray<{ address?: string }> }
  const ips = (result.ips ?? []).flatMap((entry) => entry.address === undefined ? [] : [entry.address.split("/")[0]!])
  try {
    await policy.attached({ ...pod, containerID, ips })
    return undefined
  } catch (error) {
    const msg = `network policy for ${pod.namespace}/${pod.name} could not be enforced: ${error instanceof Error ? error.message : String(error)}`
    log(msg)
    // the ADD is undone: the pod is no endpoint of this node
    await forget()
    return msg
  }
}

/** Runs the agent until SIGTERM or SIGINT. */
export const runAgent = async (args: ReadonlyArray<string>, load: PluginLoader): Promise<void> => {
  if (args[0] === "leave") return leave(args.slice(1))
  const options = parseAgentArgs(args)
  if (options === "help") return void process.stdout.write(USAGE)
  if ("error" in options) {
    process.stderr.write(`tscni agent: ${options.error}\n\n${USAGE}`)
    process.exitCode = 2
    return
  }
  // the signal is armed first: whoever sees the socket or the probe may already send it
  let stopRequested: () => void = () => {}
  const stopSignal = new Promise<void>((resolve) => {
    stopRequested = resolve
  })
  process.once("SIGTERM", () => stopRequested())
  process.once("SIGINT", () => stopRequested())

  const metrics = agentMetrics()
  let ready = false
  // with a datastore, ready also means the node holds its subnet(s): the runtime's pods wait for it
  let clusterStatus: NodeStatus | undefined
  // the socket first: a second agent on the same socket stops there, before taking the port
  let cluster: RunningCluster | undefined
  const daemon = await startDaemon(options.socket, load, {
    beforeAnswer: enforceServedCall(() => cluster),
    served: (call) => {
      metrics.calls.inc({ plugin: call.plugin, command: call.command, exit_code: String(call.exitCode) })
      metrics.seconds.observe({ plugin: call.plugin, command: call.command }, call.seconds)
    },
    fellBack: () => metrics.fallbacks.inc()
  }, options.maxRunningCalls, options.memorySoftLimitMb)
  let http: ReturnType<typeof Bun.serve> | undefined
  try {
    http = options.health === undefined ? undefined : Bun.serve({
      hostname: options.health.hostname,
      port: options.health.port,
      fetch: async (request) => {
        const path = new URL(request.url).pathname
        if (path === "/healthz") return new Response("ok\n")
        if (path === "/readyz") {
          if (!ready) return new Response("not serving calls\n", { status: 503 })
          if (options.cluster !== undefined && clusterStatus?.ready !== true) {
            return new Response(`no subnet yet: ${clusterStatus?.detail ?? "starting"}\n`, { status: 503 })
          }
          if (clusterStatus === undefined) return new Response("ready\n")
          const cannot = clusterStatus.unreachable.length === 0 ? "" : `; cannot reach ${clusterStatus.unreachable.join(", ")}`
          return new Response(`ready: ${clusterStatus.detail}${cannot}\n`)
        }
        if (path === "/metrics") {
          const load = daemon.load()
          metrics.running.set(load.running)
          metrics.waiting.set(load.waiting)
          return new Response(await metrics.registry.metrics(), { headers: { "content-type": metrics.registry.contentType } })
        }
        return new Response("not found\n", { status: 404 })
      }
    })
  } catch (error) {
    await daemon.stop()
    throw error
  }
  if (http !== undefined) log(`health and metrics on http://${options.health!.hostname}:${http.port}/`)
  cluster = options.cluster === undefined ? undefined : await startClusterSide(options.cluster, metrics.registry, (status) => {
    clusterStatus = status
  })
  try {
    ready = true
    metrics.ready.set(1)
    await stopSignal
    ready = false
    metrics.ready.set(0)
    // the cluster side releases nothing on the way out (see nodeAgent.ts); with etcd out of
    // reach its client may not answer, so stopping it gets a few seconds, not forever
    if (cluster !== undefined) {
      const stopped = await Promise.race([cluster.stop().then(() => true), Bun.sleep(CLUSTER_STOP_MS).then(() => false)])
      if (!stopped) log(`the cluster side did not stop within ${CLUSTER_STOP_MS} ms: leaving it`)
    }
    await daemon.stop()
    log("stopped")
  } finally {
    await http?.stop(true)
  }
}
