/**
 * The resident tscni's wire format: the multicall binary, run by a runtime as any plugin,
 * forwards its call (plugin name, environment, stdin) over a unix socket to a long-lived
 * `tscni daemon` that runs the same code warm, and prints the answer. One JSON line each
 * way. Nothing here loads Effect: the forwarding side must stay as cheap as a bare Bun
 * program (docs/bench/resident.md).
 */

/** Where the daemon listens unless TSCNI_DAEMON_SOCKET says otherwise (root only: mode 0600). */
export const DEFAULT_SOCKET = "/run/tscni/daemon.sock"

declare const TSCNI_BUILD_ID: string | undefined

/**
 * Which build this is (set by scripts/compile.ts): the daemon serves only callers of its
 * own build, so a half-upgraded node never mixes two versions' semantics; anything else
 * runs in-process.
 */
export const BUILD_ID: string = typeof TSCNI_BUILD_ID === "string" ? TSCNI_BUILD_ID : "source"

/** One call, as the runtime made it. */
export interface ForwardedCall {
  readonly build: string
  /** the caller's pid: the daemon compares namespaces through /proc/<pid> */
  readonly pid: number
  readonly plugin: string
  readonly env: Readonly<Record<string, string | undefined>>
  readonly stdin: string
}

/** The daemon's answer: the plugin's outcome (and its log lines), or why the caller must run it itself. */
export type DaemonAnswer =
  | { readonly stdout: string; readonly exitCode: number; readonly stderr: string }
  | { readonly fallback: string }

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
  if (value === undefined || !isRecord(value.env)) return undefined
  const { build, pid, plugin, stdin } = value
  if (typeof build !== "string" || typeof pid !== "number" || typeof plugin !== "string" || typeof stdin !== "string") return undefined
  const env: Record<string, string> = {}
  for (const [key, entry] of Object.entries(value.env)) if (typeof entry === "string") env[key] = entry
  return { build, pid, plugin, env, stdin }
}

/** Parses an answer; undefined for anything that is not one (a daemon that died mid-call). */
export const parseAnswer = (text: string): DaemonAnswer | undefined => {
  const value = parseObject(text)
  if (value === undefined) return undefined
  if (typeof value.fallback === "string") return { fallback: value.fallback }
  const { stdout, exitCode, stderr } = value
  if (typeof stdout !== "string" || typeof exitCode !== "number" || typeof stderr !== "string") return undefined
  return { stdout, exitCode, stderr }
}
