/**
 * The resident tscni's call server (run by `tscni agent`, ./agent.ts). Serves the calls the multicall binary
 * forwards (./forward.ts) with the same plugins, bound to the same layers, as a plugin
 * process would run them — only warm: no process start, no module loading, no cold code
 * per call (docs/bench/resident.md). Each call is an Effect fiber with its caller's
 * environment; a caller that goes away (the runtime killed it) interrupts its call, so an
 * interrupted ADD rolls back as in a process. It serves only callers of its own build that
 * see the same host namespace, root directory and CNI_NETNS as it does.
 */
import { mkdirSync, unlinkSync } from "node:fs"
import { dirname } from "node:path"
import type { Socket } from "bun"
import { Effect, Exit, Fiber } from "effect"
import { closeNamespaceResources, releaseNamespaceResources } from "@tscni/backend-linux"
import type { BoundPlugin } from "@tscni/skel/run"
import { tryAgainOutcome } from "./forward.ts"
import { BUILD_ID, type CallerView, DEFAULT_SOCKET, type ForwardedCall, GO, lineReader, parseCall, viewOf } from "./protocol.ts"

/** Finds the plugin a call names (the multicall binary's table). */
export type PluginLoader = (name: string) => Promise<BoundPlugin | undefined>

/**
 * Why this daemon must not serve the call, or undefined. A plugin acts on "the host" (its
 * own network namespace), on files (IPAM stores, locks, CNI_PATH) and on CNI_NETNS: the
 * daemon must see all three as the caller does, or the caller runs the call itself.
 */
export const refusal = (call: ForwardedCall, own: CallerView): string | undefined => {
  if (call.build !== BUILD_ID) return `the caller is build ${call.build}, the daemon build ${BUILD_ID}`
  if (call.view.netns === "" || call.view.netns !== own.netns) return "the caller runs in another network namespace"
  if (call.view.root !== own.root) return "the caller has another root directory"
  if (call.view.podNetns !== own.podNetns) return `${call.env.CNI_NETNS} names another namespace here than for the caller`
  return undefined
}

interface Connection {
  readonly reader: ReturnType<typeof lineReader>
  /** the call, once read and accepted (`ready` sent); its fiber once `go` came */
  call: { readonly call: ForwardedCall; readonly bound: BoundPlugin } | undefined
  fiber: Fiber.Fiber<unknown, unknown> | undefined
  /** a call line was read: the connection is being dealt with */
  started: boolean
  /** counted in `held` until done */
  counted: boolean
  closed: boolean
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

/** Sends one line; the last one closes the connection once it is out. */
const sendLine = (socket: Socket<Connection>, value: unknown, last: boolean): void => {
  socket.data.pending = Buffer.concat([socket.data.pending, Buffer.from(JSON.stringify(value) + "\n")])
  socket.data.closeWhenSent = last
  flush(socket)
}

const fallback = (socket: Socket<Connection>, why: string): void => {
  socket.data.answered = true
  sendLine(socket, { fallback: why }, true)
}

const log = (line: string) => process.stderr.write(`tscni agent: ${line}\n`)

/** What the server tells its owner (the agent's metrics): each call served, each refused. */
export interface DaemonHooks {
  /**
   * Runs after a call and before its answer. For a successful ADD it may say why the ADD
   * must not stand (the agent could not enforce the pod's policies): the daemon then undoes
   * it with the plugin's DEL, as a failed ADD leaves the host as it was, and answers code 11.
   */
  readonly beforeAnswer?: (call: ForwardedCall, outcome: { readonly stdout: string; readonly exitCode: number }) => Promise<string | undefined>
  readonly served?: (call: { readonly plugin: string; readonly command: string; readonly exitCode: number; readonly seconds: number }) => void
  readonly fellBack?: (why: string) => void
}

/** A call server that is listening; `stop` lets the calls it holds finish, then removes its socket. */
export interface RunningDaemon {
  readonly path: string
  readonly stop: () => Promise<void>
  /** calls running now, and calls told `go` that wait for a slot */
  readonly load: () => { readonly running: number; readonly waiting: number }
}

/** The agent's resident memory above which each finished call asks for a collection, unless told otherwise (`tscni agent --memory-soft-limit`). */
export const DEFAULT_MEMORY_SOFT_LIMIT_MB = 96

/** The least time between two collections the soft limit asks for: at most 50 a second. */
export const MIN_COLLECTION_INTERVAL_MS = 20

/**
 * A soft memory limit, as GOMEMLIMIT is for a Go program. After each call, while the
 * process's resident memory is above `limitBytes`, it asks for a garbage collection
 * (`Bun.gc(false)`: run beside the calls; Bun also hands the allocator's free pages back
 * then), at most once per MIN_COLLECTION_INTERVAL_MS, so that a working set above the limit
 * costs a bounded share of a core (a collection is ~2 ms of CPU here), never one per call
 * in a loop. Under the limit it costs one read of the RSS. Measured (docs/bench/README.md):
 * without it the agent peaked at 135–151 MB in the busy node's burst of a hundred pods,
 * mostly garbage and freed pages not yet returned; collecting less often (every 8 MB of
 * heap growth, every 200 ms) left the peak where it was. `limitBytes` 0 turns it off.
 */
export const memoryGuard = (
  limitBytes: number,
  probes: { readonly rss: () => number; readonly now: () => number; readonly collect: () => void } = {
    rss: () => process.memoryUsage.rss(),
    now: () => performance.now(),
    collect: () => Bun.gc(false)
  }
) => {
  let last = Number.NEGATIVE_INFINITY
  return {
    afterCall: (): boolean => {
      if (limitBytes <= 0 || probes.rss() <= limitBytes) return false
      const now = probes.now()
      if (now - last < MIN_COLLECTION_INTERVAL_MS) return false
      last = now
      probes.collect()
      return true
    }
  }
}

/** How many calls run at once unless told otherwise (`tscni agent --max-running-calls`). */
export const DEFAULT_MAX_RUNNING_CALLS = 8

/**
 * At most `max` calls run at once; the others wait their turn (first come, first served),
 * holding nothing but their request. The plugins' kernel calls are synchronous, so more
 * calls at once gain nothing, while each running call holds its replies and buffers: in a
 * burst of a hundred pods this bounds the agent's memory.
 */
const callSlots = (max: number) => {
  let running = 0
  const waiting: Array<() => void> = []
  return {
    acquire: (): Promise<void> => {
      if (running < max) {
        running++
        return Promise.resolve()
      }
      return new Promise<void>((resolve) => waiting.push(resolve))
    },
    release: (): void => {
      const next = waiting.shift()
      // the slot passes straight to the next call: running stays the same
      if (next !== undefined) next()
      else running--
    },
    load: () => ({ running, waiting: waiting.length })
  }
}

/** Where the calls are served: `TSCNI_DAEMON_SOCKET`, else DEFAULT_SOCKET. */
export const defaultSocketPath = (): string => process.env.TSCNI_DAEMON_SOCKET ?? DEFAULT_SOCKET

/** Refuses to start over a live daemon; removes the socket file a dead one left. */
const claimSocketPath = async (path: string): Promise<void> => {
  mkdirSync(dirname(path), { recursive: true, mode: 0o755 })
  const alive = await Bun.connect({ unix: path, socket: { data: () => {} } }).then((socket) => {
    socket.end()
    return true
  }, () => false)
  if (alive) throw new Error(`another daemon is listening on ${path}`)
  try {
    unlinkSync(path)
  } catch {
    // there was none
  }
}

/** Starts serving calls on `path` (refusing to take over a live server's socket). */
export const startDaemon = async (
  path: string,
  load: PluginLoader,
  hooks: DaemonHooks = {},
  maxRunningCalls = DEFAULT_MAX_RUNNING_CALLS,
  memorySoftLimitMb = DEFAULT_MEMORY_SOFT_LIMIT_MB
): Promise<RunningDaemon> => {
  await claimSocketPath(path)
  const slots = callSlots(maxRunningCalls)
  const memory = memoryGuard(memorySoftLimitMb * 1024 * 1024)
  /** calls read and not yet finished (loading, waiting for `go`, or running) */
  let held = 0
  let stopping = false
  /** running calls per pod namespace path: its sockets are closed when the last one ends */
  const podCalls = new Map<string, number>()

  const accept = async (socket: Socket<Connection>, call: ForwardedCall): Promise<void> => {
    const refused = stopping ? "the daemon is stopping" : refusal(call, await viewOf(call.env.CNI_NETNS ?? ""))
    if (refused !== undefined) {
      hooks.fellBack?.(refused)
      return fallback(socket, refused)
    }
    const bound = await load(call.plugin).catch((error: unknown) => {
      log(`loading plugin ${call.plugin}: ${error instanceof Error ? error.message : String(error)}`)
      return undefined
    })
    if (bound === undefined) {
      hooks.fellBack?.(`no plugin ${call.plugin}`)
      return fallback(socket, `no plugin ${call.plugin}`)
    }
    if (socket.data.closed) return
    socket.data.call = { call, bound }
    sendLine(socket, { ready: true }, false)
  }

  const run = async (socket: Socket<Connection>): Promise<void> => {
    if (socket.data.call === undefined) return
    await slots.acquire()
    try {
      // the caller went away while its call waited for a slot: nothing ran, nothing to undo
      if (!socket.data.closed) await runNow(socket)
    } finally {
      slots.release()
      memory.afterCall()
    }
  }

  const runNow = async (socket: Socket<Connection>): Promise<void> => {
    const accepted = socket.data.call
    if (accepted === undefined) return
    const { call, bound } = accepted
    const podNetns = call.env.CNI_NETNS ?? ""
    podCalls.set(podNetns, (podCalls.get(podNetns) ?? 0) + 1)
    const lines: Array<string> = []
    const started = performance.now()
    const invoke = (env: ForwardedCall["env"]) =>
      Effect.runFork(
        bound.invoke(
          { env, stdin: Effect.succeed(call.stdin) },
          { log: (line) => void lines.push(line), note: `${bound.name}: served by the tscni daemon (pid ${process.pid})` }
        )
      )
    const fiber = invoke(call.env)
    socket.data.fiber = fiber
    const exit = await Effect.runPromise(Fiber.await(fiber))
    if (Exit.isSuccess(exit)) {
      hooks.served?.({ plugin: bound.name, command: call.env.CNI_COMMAND ?? "", exitCode: exit.value.exitCode, seconds: (performance.now() - started) / 1000 })
    }
    // the owner's last word before the caller hears the outcome (the agent enforces a new pod's policies here)
    const refused = Exit.isSuccess(exit) && hooks.beforeAnswer !== undefined
      ? await hooks.beforeAnswer(call, exit.value).catch((error: unknown) => {
        log(`after ${bound.name} ${call.env.CNI_COMMAND ?? ""}: ${error instanceof Error ? error.message : String(error)}`)
        return undefined
      })
      : undefined
    let outcome = Exit.isSuccess(exit) ? exit.value : undefined
    if (refused !== undefined && call.env.CNI_COMMAND === "ADD") {
      const undone = await Effect.runPromise(Fiber.await(invoke({ ...call.env, CNI_COMMAND: "DEL" })))
      const undo = Exit.isSuccess(undone) && undone.value.exitCode === 0 ? "the ADD was undone" : "undoing the ADD failed too: a DEL must clean it"
      outcome = await tryAgainOutcome(call.stdin, `${refused}; ${undo}`)
    }
    if (outcome !== undefined && !socket.data.closed) {
      socket.data.answered = true
      sendLine(socket, { ...outcome, stderr: lines.join("") }, true)
    } else if (!socket.data.closed) {
      // no outcome (cannot happen today: invoke never fails) must still end the caller's wait
      socket.end()
    }
    // interrupted: the caller is gone, there is no one to answer
    const left = (podCalls.get(podNetns) ?? 1) - 1
    if (left > 0) podCalls.set(podNetns, left)
    else podCalls.delete(podNetns)
    try {
      // sockets in a pod namespace would keep it alive after the runtime deleted it
      if (left === 0 && podNetns !== "") closeNamespaceResources(podNetns)
    } catch (error) {
      log(`closing the sockets of ${podNetns}: ${error instanceof Error ? error.message : String(error)}`)
    }
  }

  const done = (socket: Socket<Connection>) => {
    if (!socket.data.counted) return
    socket.data.counted = false
    held--
    if (held === 0) releaseNamespaceResources()
  }

  // only root may hand the daemon calls that act as root; the mask is the socket's alone
  const umask = process.umask(0o077)
  const connections = new Set<Socket<Connection>>()
  const server = Bun.listen<Connection>({
    unix: path,
    socket: {
      open: (socket) => {
        connections.add(socket)
        socket.data = {
          reader: lineReader(),
          call: undefined,
          fiber: undefined,
          started: false,
          counted: false,
          closed: false,
          answered: false,
          pending: Buffer.alloc(0),
          closeWhenSent: false
        }
      },
      data: (socket, data) => {
        const state = socket.data
        for (const line of state.reader.push(data)) {
          if (state.call !== undefined && state.fiber === undefined && line === GO) {
            void run(socket)
              .catch((error: unknown) => {
                log(`call failed: ${error instanceof Error ? error.message : String(error)}`)
                socket.end()
              })
              .finally(() => done(socket))
            return
          }
          // anything else after the call line (a `go` before `ready`, a second call): not our caller
          if (state.started) return void socket.end()
          state.started = true
          state.counted = true
          held++
          const call = parseCall(line)
          if (call === undefined) {
            fallback(socket, "not a call")
            return done(socket)
          }
          void accept(socket, call)
            .catch(() => fallback(socket, "the daemon could not take the call"))
            .finally(() => {
              if (socket.data.call === undefined) done(socket)
            })
        }
        if (state.reader.tooLong()) socket.end()
      },
      drain: (socket) => flush(socket),
      close: (socket) => {
        connections.delete(socket)
        socket.data.closed = true
        const fiber = socket.data.fiber
        // the caller went away before its answer: interrupt the call, which rolls back
        if (fiber !== undefined && !socket.data.answered) Effect.runFork(Fiber.interrupt(fiber))
        // accepted but never told to go: nothing ran
        else if (fiber === undefined && socket.data.call !== undefined) done(socket)
      }
    }
  })
  process.umask(umask)
  log(`serving calls on ${path} (build ${BUILD_ID}, pid ${process.pid})`)

  const stop = async (): Promise<void> => {
    // calls read from now on are sent back to run in their callers; those held finish
    stopping = true
    while (held > 0) await Bun.sleep(20)
    server.stop(false)
    // connections that never sent a call would keep the process alive; answers still being sent finish
    for (const socket of connections) if (!socket.data.started && !socket.data.closeWhenSent) socket.end()
    try {
      unlinkSync(path)
    } catch {
      // already gone
    }
  }
  return { path, stop, load: slots.load }
}
