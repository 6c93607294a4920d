/**
 * The forwarding side, in the multicall binary before any plugin code loads: ask the
 * resident daemon to run this call. `undefined` means "run it here": there is no daemon,
 * it refused (another build, another namespace), or it went away before answering a call
 * that may be run again (every verb but ADD). Loads nothing heavy (no Effect).
 */
import type { Socket } from "bun"
import { BUILD_ID, type DaemonAnswer, DEFAULT_SOCKET, parseAnswer } from "./protocol.ts"

/** The outcome to print: the daemon's, or the error for an ADD the daemon did not finish. */
export interface ForwardedOutcome {
  readonly stdout: string
  readonly exitCode: number
  readonly stderr: string
}

/** Writes `text` through a socket that may take it in parts (called on open and on drain). */
const sender = (text: string) => {
  let pending = Buffer.from(text)
  return {
    flush: (socket: Socket<unknown>): void => {
      if (pending.length === 0) return
      const written = socket.write(pending)
      pending = pending.subarray(Math.max(0, written))
    },
    done: (): boolean => pending.length === 0
  }
}

/** What an ADD gets when the daemon took it and ended without an answer: its work may be half done (a DEL cleans it). */
const lostAdd = async (stdin: string): Promise<ForwardedOutcome> => {
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
  const error = tryAgainLater("the tscni daemon ended before answering this ADD")
  return { stdout: JSON.stringify(errorResult(error, version)) + "\n", exitCode: 1, stderr: "" }
}

/** Asks the daemon at TSCNI_DAEMON_SOCKET (default DEFAULT_SOCKET) to run `plugin` with this process's env and `stdin`. */
export const forwardToDaemon = (plugin: string, stdin: string): Promise<ForwardedOutcome | undefined> =>
  new Promise<DaemonAnswer | "lost" | undefined>((resolve) => {
    const call = sender(JSON.stringify({ build: BUILD_ID, pid: process.pid, plugin, env: process.env, stdin }) + "\n")
    let reply = ""
    Bun.connect({
      unix: process.env.TSCNI_DAEMON_SOCKET ?? DEFAULT_SOCKET,
      socket: {
        open: (socket) => call.flush(socket),
        drain: (socket) => call.flush(socket),
        data: (_socket, data) => {
          reply += data.toString()
        },
        close: () => resolve(parseAnswer(reply) ?? (call.done() ? "lost" : undefined)),
        error: () => resolve(undefined)
      }
    }).catch(() => resolve(undefined))
  }).then((answer) => {
    if (answer === undefined) return undefined
    if (answer === "lost") return process.env.CNI_COMMAND === "ADD" ? lostAdd(stdin) : undefined
    return "fallback" in answer ? undefined : answer
  })
