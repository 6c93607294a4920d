/**
 * A PluginExec that runs tscni's plugins in this process instead of exec'ing binaries, so
 * a dry run (and IPAM delegation inside it) never touches the host: plugins get the
 * dry run's Backend (the mock kernel) and IPAM store, and every on-disk state location
 * (host-local's and tuning's `dataDir`) is rewritten into a scratch directory.
 */
import { Effect, Layer, Option } from "effect"
import type { Backend } from "@tscni/backend"
import type { IpamStore } from "@tscni/ipam"
import { type CniError, ioFailure } from "@tscni/spec"
import { type ExecOutput, type ExecRequest, makePluginExec, PluginExec, type PluginExecShape, validatePluginType } from "@tscni/steps"
import { type InProcessPlugin, scratchStateDir } from "./plugins.ts"

/** The pseudo path an in-process plugin is "found" at. */
export const inProcessPath = (type: string): string => `tscni:${type}`

const isObject = (value: unknown): value is Record<string, unknown> =>
  typeof value === "object" && value !== null && !Array.isArray(value)

/**
 * A plugin's stdin with every on-disk state location pointed under `scratch`: host-local's
 * `ipam.dataDir`, and tuning's `dataDir` when the config names one.
 */
export const redirectState = (type: string, stdin: string, scratch: string): string => {
  let json: unknown
  try {
    json = JSON.parse(stdin)
  } catch {
    return stdin
  }
  if (!isObject(json)) return stdin
  let out: Record<string, unknown> = json
  if (isObject(json.ipam) && json.ipam.type === "host-local") {
    out = { ...out, ipam: { ...json.ipam, dataDir: scratchStateDir(scratch, "host-local") } }
  }
  if (type === "tuning" && typeof json.dataDir === "string") out = { ...out, dataDir: scratchStateDir(scratch, "tuning") }
  return out === json ? stdin : JSON.stringify(out)
}

/** Wraps every plugin run (top-level and delegated), to observe it. */
export type Around = (request: ExecRequest, run: Effect.Effect<ExecOutput, CniError>) => Effect.Effect<ExecOutput, CniError>

/**
 * The layer: a PluginExec over `plugins`, each run with the surrounding Backend and
 * IpamStore and with this PluginExec itself (so bridge's IPAM call stays in-process).
 */
export const inProcessExec = (
  plugins: ReadonlyMap<string, InProcessPlugin>,
  scratch: string,
  around: Around = (_request, run) => run
): Layer.Layer<PluginExec, never, Backend | IpamStore> =>
  Layer.effect(PluginExec)(
    Effect.gen(function*() {
      const context = yield* Effect.context<Backend | IpamStore>()
      const self: PluginExecShape = makePluginExec({
        lookup: (type) =>
          validatePluginType(type).pipe(Effect.map((valid) => (plugins.has(valid) ? Option.some(inProcessPath(valid)) : Option.none()))),
        exec: (request) => {
          const type = request.path.slice(request.path.indexOf(":") + 1)
          const plugin = plugins.get(type)
          if (plugin === undefined) return Effect.fail(ioFailure(`no in-process plugin ${type}`))
          const run = plugin.run({ env: request.env, stdin: Effect.succeed(redirectState(type, request.stdin, scratch)) }).pipe(
            Effect.map((outcome): ExecOutput => ({ exitCode: outcome.exitCode, stdout: outcome.stdout, stderr: "" })),
            Effect.provideService(PluginExec, self),
            Effect.provideContext(context)
          )
          return around(request, run)
        }
      })
      return self
    })
  )
