/**
 * The resident tscni's wire format: the multicall binary, run by a runtime as any plugin,
 * forwards its call (plugin name, environment, stdin) over a unix socket to a long-lived
 * `tscni daemon` that runs the same code warm, and prints the answer. Nothing here loads
 * Effect or node:fs: the forwarding side must stay as cheap as a bare Bun program
 * (docs/bench/resident.md).
 *
 * One JSON line each way, with a handshake so that a call runs exactly once:
 *   caller → daemon: the call
 *   daemon → caller: `{"fallback": why}` (the caller runs it itself) or `{"ready": true}`
 *   caller → daemon: `go` (only then does the daemon start the call)
 *   daemon → caller: the outcome
 * A caller that has not sent `go` may always run the call itself (a daemon that does not
 * answer in time, or goes away); once it has, only the daemon runs it — except that a DEL,
 * CHECK, GC or STATUS whose daemon went away before answering is run again by the caller
 * (after, never beside, the daemon's run: they are idempotent), and an ADD is code 11.
 */

/** Where the daemon listens unless TSCNI_DAEMON_SOCKET says otherwise (root only: mode 0600). */
export const DEFAULT_SOCKET = "/run/tscni/daemon.sock"

/** How long a caller waits for `ready` before it runs the call itself (a hung daemon costs this, not forever). */
export const READY_TIMEOUT_MS = 2000

/** The largest call or answer line accepted (a CNI config with a large prevResult is some kilobytes). */
export const MAX_LINE_BYTES = 64 * 1024 * 1024

/** The caller's `go`, as a line. */
export const GO = "go"

declare const TSCNI_BUILD_ID: string | undefined

/**
 * Which build this is (set by scripts/compile.ts): the daemon serves only callers of its
 * own build, so a half-upgraded node never mixes two versions' semantics; anything else
 * runs in-process.
 */
export const BUILD_ID: string = typeof TSCNI_BUILD_ID === "string" ? TSCNI_BUILD_ID : "source"

/**
 * What a call acts on, as "device:inode" of: the network namespace it runs in ("the host"),
 * its root directory (so the same files: IPAM stores, locks, CNI_PATH), and CNI_NETNS
 * ("" when there is none). The daemon serves a call only when it sees the same three.
 */
export interface CallerView {
  readonly netns: string
  readonly root: string
  readonly podNetns: string
}

/**
 * "device:inode" of a path, "" when there is none. Bun.file().stat rather than node:fs,
 * whose loading alone costs the forwarding process ~5 MB of its 30.
 */
export const fileIdentity = (path: string): Promise<string> =>
  path === "" ? Promise.resolve("") : Bun.file(path).stat().then((stat) => `${stat.dev}:${stat.ino}`, () => "")

/** This process's view, for CNI_NETNS `podNetns`. */
export const viewOf = async (podNetns: string): Promise<CallerView> => {
  const [netns, root, pod] = await Promise.all([
    fileIdentity("/proc/self/ns/net"),
    fileIdentity("/"),
    podNetns.startsWith("/") ? fileIdentity(podNetns) : Promise.resolve("")
  ])
  return { netns, root, podNetns: pod }
}

/** One call, as the runtime made it. */
export interface ForwardedCall {
  readonly build: string
  readonly view: CallerView
  readonly plugin: string
  readonly env: Readonly<Record<string, string | undefined>>
  readonly stdin: string
}

/** The daemon's outcome of a call it ran: the plugin's stdout, exit code, and log lines for stderr. */
export interface DaemonOutcome {
  readonly stdout: string
  readonly exitCode: number
  readonly stderr: string
}

/** What the daemon says after reading a call. */
export type DaemonReply = { readonly fallback: string } | { readonly ready: true }

const isRecord = (value: unknown): value is Record<string, unknown> => typeof value === "object" && value !== null && !Array.isArray(value)

/** A JSON object, or undefined for any other text (cut off, not JSON, not an object). */
const parseObject = (text: string): Record<string, unknown> | undefined => {
  try {
    const value: unknown = JSON.parse(text)
    return isRecord(value) ? value : undefined
  } catch {
    return undefined
  }
}

/** Parses a call line; undefined for anything that is not one. */
export const parseCall = (line: string): ForwardedCall | undefined => {
  const value = parseObject(line)
  if (value === undefined || !isRecord(value.env) || !isRecord(value.view)) return undefined
  const { build, plugin, stdin } = value
  const { netns, root, podNetns } = value.view
  if (typeof build !== "string" || typeof plugin !== "string" || typeof stdin !== "string") return undefined
  if (typeof netns !== "string" || typeof root !== "string" || typeof podNetns !== "string") return undefined
  const env: Record<string, string> = {}
  for (const [key, entry] of Object.entries(value.env)) if (typeof entry === "string") env[key] = entry
  return { build, view: { netns, root, podNetns }, plugin, env, stdin }
}

/** Parses the daemon's reply to a call; undefined for anything else. */
export const parseReply = (line: string): DaemonReply | undefined => {
  const value = parseObject(line)
  if (value === undefined) return undefined
  if (typeof value.fallback === "string") return { fallback: value.fallback }
  return value.ready === true ? { ready: true } : undefined
}

/** Parses an outcome line; undefined for anything that is not one (a daemon that died mid-call). */
export const parseOutcome = (line: string): DaemonOutcome | undefined => {
  const value = parseObject(line)
  if (value === undefined) return undefined
  const { stdout, exitCode, stderr } = value
  if (typeof stdout !== "string" || typeof exitCode !== "number" || typeof stderr !== "string") return undefined
  return { stdout, exitCode, stderr }
}

/**
 * Splits a byte stream into lines, decoding each whole line once (a UTF-8 character cut
 * between two reads stays whole). `push` returns the complete lines so far; a line longer
 * than MAX_LINE_BYTES makes `tooLong` true.
 */
export const lineReader = () => {
  let pending = Buffer.alloc(0)
  let tooLong = false
  return {
    push: (chunk: Uint8Array): Array<string> => {
      pending = pending.length === 0 ? Buffer.from(chunk) : Buffer.concat([pending, chunk])
      const lines: Array<string> = []
      for (let end = pending.indexOf(0x0a); end >= 0; end = pending.indexOf(0x0a)) {
        lines.push(pending.subarray(0, end).toString("utf8"))
        pending = pending.subarray(end + 1)
      }
      if (pending.length > MAX_LINE_BYTES) tooLong = true
      return lines
    },
    tooLong: (): boolean => tooLong
  }
}
