/**
 * The forwarding side, in the multicall binary before any plugin code loads: ask the
 * resident daemon to run this call. `undefined` means "run it here": there is no daemon, it
 * refused (another build, another view of the host), it did not say `ready` in time, or it
 * went away before the caller said `go` (see protocol.ts: after `go` only the daemon runs
 * the call). Loads nothing heavy (no Effect).
 */
import type { Socket } from "bun"
import {
  BUILD_ID,
  DEFAULT_SOCKET,
  type DaemonOutcome,
  GO,
  lineReader,
  parseOutcome,
  parseReply,
  READY_TIMEOUT_MS,
  viewOf
} from "./protocol.ts"

/** Writes `text` through a socket that may take it in parts (called on open and on drain). */
const sender = (text: string) => {
  let pending = Buffer.from(text)
  return (socket: Socket<unknown>): void => {
    if (pending.length === 0) return
    const written = socket.write(pending)
    pending = pending.subarray(Math.max(0, written))
  }
}

/** A code 11 (try again later) outcome for the call whose config is `stdin`, in its cniVersion when that is one. */
export const tryAgainOutcome = async (stdin: string, msg: string): Promise<DaemonOutcome> => {
  const { errorResult, tryAgainLater } = await import("@tscni/spec/errors")
  const { LATEST_VERSION, isSupportedVersion } = await import("@tscni/spec/versions")
  let version: string = LATEST_VERSION
  try {
    const parsed: unknown = JSON.parse(stdin)
    const cniVersion = typeof parsed === "object" && parsed !== null && "cniVersion" in parsed ? parsed.cniVersion : undefined
    if (typeof cniVersion === "string" && isSupportedVersion(cniVersion)) version = cniVersion
  } catch {
    // the daemon would have answered a bad config itself; keep the latest version
  }
  return { stdout: JSON.stringify(errorResult(tryAgainLater(msg), version)) + "\n", exitCode: 1, stderr: "" }
}

/** What an ADD gets when the daemon started it and ended without an answer: its work may be half done (a DEL cleans it). */
const lostAdd = (stdin: string): Promise<DaemonOutcome> => tryAgainOutcome(stdin, "the tscni daemon ended before answering this ADD")

/** Asks the daemon at TSCNI_DAEMON_SOCKET (default DEFAULT_SOCKET) to run `plugin` with this process's env and `stdin`. */
export const forwardToDaemon = (plugin: string, stdin: string): Promise<DaemonOutcome | undefined> =>
  new Promise<DaemonOutcome | "lost" | undefined>((resolve) => {
    // the call is built once a daemon answered the connect: with none (the usual case) nothing is spent on it
    let send: ((socket: Socket<unknown>) => void) | undefined
    const reader = lineReader()
    let saidGo = false
    let settled = false
    let connected: Socket<unknown> | undefined
    const settle = (result: DaemonOutcome | "lost" | undefined) => {
      if (settled) return
      settled = true
      clearTimeout(timer)
      connected?.end()
      resolve(result)
    }
    // once `go` is said the call is the daemon's, however long it takes
    const timer = setTimeout(() => {
      if (!saidGo) settle(undefined)
    }, READY_TIMEOUT_MS)
    /** Before `go` nothing can have run: any trouble means "run it here". After, it means "lost". */
    const trouble = () => settle(saidGo ? "lost" : undefined)
    Bun.connect({
      unix: process.env.TSCNI_DAEMON_SOCKET ?? DEFAULT_SOCKET,
      socket: {
        open: (socket) => {
          // connected only after the wait for `ready` ran out: the call runs here, not there
          if (settled) return void socket.end()
          connected = socket
          void viewOf(process.env.CNI_NETNS ?? "").then((view) => {
            if (settled) return
            send = sender(JSON.stringify({ build: BUILD_ID, view, plugin, env: process.env, stdin }) + "\n")
            send(socket)
          })
        },
        drain: (socket) => send?.(socket),
        data: (socket, data) => {
          for (const line of reader.push(data)) {
            if (settled) return
            if (saidGo) return settle(parseOutcome(line) ?? "lost")
            const reply = parseReply(line)
            if (reply === undefined || "fallback" in reply) return settle(undefined)
            // a `go` that did not go out is none: nothing ran, the call runs here
            if (socket.write(GO + "\n") <= 0) return settle(undefined)
            saidGo = true
          }
          if (reader.tooLong()) trouble()
        },
        close: trouble,
        error: trouble
      }
    }).catch(trouble)
  }).then((result) => {
    if (result !== "lost") return result
    return process.env.CNI_COMMAND === "ADD" ? lostAdd(stdin) : undefined
  })
