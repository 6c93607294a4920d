/**
 * `tscni daemon [--socket PATH]`: the resident tscni. Serves the calls the multicall binary
 * forwards (./forward.ts) with the same plugins, bound to the same layers, as a plugin
 * process would run them — only warm: no process start, no module loading, no cold code
 * per call (docs/bench/resident.md). Each call is an Effect fiber; a caller that goes away
 * (the runtime killed it) interrupts its call, so an interrupted ADD rolls back as in a
 * process. It serves only callers of its own build that see the same network namespaces.
 */
import { mkdirSync, statSync, unlinkSync } from "node:fs"
import { dirname } from "node:path"
import type { Socket } from "bun"
import { Effect, Exit, Fiber } from "effect"
import { releaseNamespaceResources } from "@tscni/backend-linux"
import type { BoundPlugin } from "@tscni/skel/run"
import { BUILD_ID, type DaemonAnswer, DEFAULT_SOCKET, type ForwardedCall, parseCall } from "./protocol.ts"

/** Finds the plugin a call names (the multicall binary's table). */
export type PluginLoader = (name: string) => Promise<BoundPlugin | undefined>

/** "device:inode" of a namespace file, undefined when there is none. */
const identity = (path: string): string | undefined => {
  try {
    const stat = statSync(path)
    return `${stat.dev}:${stat.ino}`
  } catch {
    return undefined
  }
}

/**
 * Why this daemon must not serve the call, or undefined. The plugin acts on "the host" (its
 * own network namespace) and on CNI_NETNS as the caller sees them: both must be what the
 * daemon sees, or the caller runs the call itself.
 */
export const refusal = (call: ForwardedCall): string | undefined => {
  if (call.build !== BUILD_ID) return `the caller is build ${call.build}, the daemon build ${BUILD_ID}`
  const own = identity("/proc/self/ns/net")
  if (own === undefined || own !== identity(`/proc/${call.pid}/ns/net`)) return "the caller runs in another network namespace"
  const netns = call.env.CNI_NETNS ?? ""
  if (netns.startsWith("/") && identity(netns) !== identity(`/proc/${call.pid}/root${netns}`)) {
    return `${netns} names another namespace here than for the caller`
  }
  return undefined
}

interface Connection {
  buffer: string
  /** a call line was read: nothing more is expected from the caller */
  started: boolean
  /** the caller went away */
  closed: boolean
  fiber: Fiber.Fiber<unknown, unknown> | undefined
  answered: boolean
  pending: Buffer
  closeWhenSent: boolean
}

/** Sends what is pending; closes once all is sent if asked to. */
const flush = (socket: Socket<Connection>): void => {
  const state = socket.data
  if (state.pending.length > 0) {
    const written = socket.write(state.pending)
    state.pending = state.pending.subarray(Math.max(0, written))
  }
  if (state.pending.length === 0 && state.closeWhenSent) socket.end()
}

const answer = (socket: Socket<Connection>, reply: DaemonAnswer): void => {
  socket.data.answered = true
  socket.data.pending = Buffer.from(JSON.stringify(reply) + "\n")
  socket.data.closeWhenSent = true
  flush(socket)
}

const log = (line: string) => process.stderr.write(`tscni daemon: ${line}\n`)

/** Parses `--socket PATH` (the only option). */
const socketPathOf = (args: ReadonlyArray<string>): string => {
  const at = args.indexOf("--socket")
  return at >= 0 && args[at + 1] !== undefined ? args[at + 1]! : process.env.TSCNI_DAEMON_SOCKET ?? DEFAULT_SOCKET
}

/** Refuses to start over a live daemon; removes the socket file a dead one left. */
const claimSocketPath = async (path: string): Promise<void> => {
  mkdirSync(dirname(path), { recursive: true, mode: 0o755 })
  if (identity(path) === undefined) return
  const alive = await Bun.connect({ unix: path, socket: { data: () => {} } }).then((socket) => {
    socket.end()
    return true
  }, () => false)
  if (alive) throw new Error(`another daemon is listening on ${path}`)
  unlinkSync(path)
}

/** Runs the daemon until SIGTERM/SIGINT; then finishes the calls in progress and removes its socket. */
export const runDaemon = async (args: ReadonlyArray<string>, load: PluginLoader): Promise<void> => {
  const path = socketPathOf(args)
  await claimSocketPath(path)
  let running = 0

  const serve = async (socket: Socket<Connection>, call: ForwardedCall): Promise<void> => {
    const refused = refusal(call)
    const bound = refused === undefined ? await load(call.plugin) : undefined
    if (bound === undefined) return answer(socket, { fallback: refused ?? `no plugin ${call.plugin}` })
    // gone while the plugin was loading: nothing has been done, and nothing must be
    if (socket.data.closed) return
    const lines: Array<string> = []
    running++
    const fiber = Effect.runFork(
      bound.invoke(
        { env: call.env, stdin: Effect.succeed(call.stdin) },
        { log: (line) => void lines.push(line), note: `${bound.name}: served by the tscni daemon (pid ${process.pid})` }
      )
    )
    socket.data.fiber = fiber
    const exit = await Effect.runPromise(Fiber.await(fiber))
    running--
    // sockets in pod namespaces would keep deleted namespaces alive: close them when idle
    if (running === 0) releaseNamespaceResources()
    if (Exit.isSuccess(exit)) answer(socket, { ...exit.value, stderr: lines.join("") })
    // interrupted: the caller is gone, there is no one to answer
  }

  // stopping is armed before the socket exists: whoever sees the socket may already signal
  let stopRequested: () => void = () => {}
  const stopped = new Promise<void>((resolve) => {
    stopRequested = resolve
  })
  process.once("SIGTERM", () => stopRequested())
  process.once("SIGINT", () => stopRequested())

  // only root may hand the daemon calls that act as root
  process.umask(0o077)
  const server = Bun.listen<Connection>({
    unix: path,
    socket: {
      open: (socket) => {
        socket.data = { buffer: "", started: false, closed: false, fiber: undefined, answered: false, pending: Buffer.alloc(0), closeWhenSent: false }
      },
      data: (socket, data) => {
        const state = socket.data
        if (state.started) return
        state.buffer += data.toString()
        const end = state.buffer.indexOf("\n")
        if (end < 0) return
        state.started = true
        const call = parseCall(state.buffer.slice(0, end))
        if (call === undefined) return answer(socket, { fallback: "not a call" })
        void serve(socket, call).catch((error: unknown) => {
          log(`call failed: ${error instanceof Error ? error.message : String(error)}`)
          socket.end()
        })
      },
      drain: (socket) => flush(socket),
      close: (socket) => {
        socket.data.closed = true
        const fiber = socket.data.fiber
        // the caller went away before its answer: interrupt the call, which rolls back
        if (fiber !== undefined && !socket.data.answered) Effect.runFork(Fiber.interrupt(fiber))
      }
    }
  })
  log(`listening on ${path} (build ${BUILD_ID}, pid ${process.pid})`)

  await stopped
  server.stop(false)
  // the calls in progress finish and are answered
  while (running > 0) await Bun.sleep(20)
  try {
    unlinkSync(path)
  } catch {
    // already gone
  }
  log("stopped")
}
