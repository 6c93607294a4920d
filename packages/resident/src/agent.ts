/**
 * `tscni agent`: the one tscni process of a node. Today it serves the plugin calls the
 * multicall binary forwards (./daemon.ts), warm, and answers health probes and metric
 * scrapes over HTTP; without it every call runs in its own process, correct and complete.
 * SIGTERM (a restart, an upgrade) lets the calls it holds finish, then it exits.
 */
import { Counter, Gauge, Histogram, Registry } from "prom-client"
import { BUILD_ID } from "./protocol.ts"
import { DEFAULT_MAX_RUNNING_CALLS, defaultSocketPath, type PluginLoader, startDaemon } from "./daemon.ts"

/** Where probes and scrapes are answered unless `--health-listen` says otherwise (per network namespace). */
export const DEFAULT_HEALTH_LISTEN = "127.0.0.1:9402"

export const USAGE = `usage: tscni agent [--socket PATH] [--health-listen HOST:PORT | --health-listen off] [--max-running-calls N]

The node's tscni process: serves the calls of the multicall plugin binary (tscni and its
links in the CNI bin dir) warm, over a unix socket, and answers HTTP probes.

  --socket PATH              unix socket the plugins forward their calls to
                             (default: $TSCNI_DAEMON_SOCKET, else /run/tscni/daemon.sock)
  --health-listen HOST:PORT  /healthz (alive), /readyz (serving calls), /metrics (Prometheus)
                             (default: ${DEFAULT_HEALTH_LISTEN}; "off": none)
  --max-running-calls N      calls run at once; the others wait their turn
                             (default: ${DEFAULT_MAX_RUNNING_CALLS})
  --help                     this text

Without the agent every plugin call runs in its own process, as the runtime started it.
\`tscni daemon\` is the same command (its older name).
`

export interface AgentOptions {
  readonly socket: string
  /** undefined: no HTTP endpoint */
  readonly health: { readonly hostname: string; readonly port: number } | undefined
  readonly maxRunningCalls: number
}

const FLAGS = ["--socket", "--health-listen", "--max-running-calls"]

/** The options, or the reason they are wrong; `help` when help was asked for. */
export const parseAgentArgs = (args: ReadonlyArray<string>): AgentOptions | "help" | { readonly error: string } => {
  let socket = defaultSocketPath()
  let health: string = DEFAULT_HEALTH_LISTEN
  let maxRunning = String(DEFAULT_MAX_RUNNING_CALLS)
  for (let i = 0; i < args.length; i++) {
    const flag = args[i]!
    if (flag === "--help" || flag === "-h") return "help"
    const value = args[i + 1]
    if (!FLAGS.includes(flag)) return { error: `unknown argument '${flag}'` }
    if (value === undefined || value === "") return { error: `${flag} needs a value` }
    if (flag === "--socket") socket = value
    else if (flag === "--health-listen") health = value
    else maxRunning = value
    i++
  }
  if (!socket.startsWith("/")) return { error: `--socket: '${socket}' is not an absolute path` }
  const maxRunningCalls = Number(maxRunning)
  if (!/^\d{1,4}$/.test(maxRunning) || maxRunningCalls < 1) return { error: `--max-running-calls: '${maxRunning}' is not a whole number from 1 to 9999` }
  if (health === "off") return { socket, health: undefined, maxRunningCalls }
  const match = /^(.+):(\d{1,5})$/.exec(health)
  const port = Number(match?.[2])
  if (match === null || port < 1 || port > 65535) return { error: `--health-listen: '${health}' is not HOST:PORT (or off)` }
  return { socket, health: { hostname: match[1]!.replace(/^\[(.*)\]$/, "$1"), port }, maxRunningCalls }
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

/** Runs the agent until SIGTERM or SIGINT. */
export const runAgent = async (args: ReadonlyArray<string>, load: PluginLoader): Promise<void> => {
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
  // the socket first: a second agent on the same socket stops there, before taking the port
  const daemon = await startDaemon(options.socket, load, {
    served: (call) => {
      metrics.calls.inc({ plugin: call.plugin, command: call.command, exit_code: String(call.exitCode) })
      metrics.seconds.observe({ plugin: call.plugin, command: call.command }, call.seconds)
    },
    fellBack: () => metrics.fallbacks.inc()
  }, options.maxRunningCalls)
  let http: ReturnType<typeof Bun.serve> | undefined
  try {
    http = options.health === undefined ? undefined : Bun.serve({
      hostname: options.health.hostname,
      port: options.health.port,
      fetch: async (request) => {
        const path = new URL(request.url).pathname
        if (path === "/healthz") return new Response("ok\n")
        if (path === "/readyz") return ready ? new Response("ready\n") : new Response("not serving calls\n", { status: 503 })
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
  try {
    ready = true
    metrics.ready.set(1)
    await stopSignal
    ready = false
    metrics.ready.set(0)
    await daemon.stop()
    log("stopped")
  } finally {
    await http?.stop(true)
  }
}
