import { statSync } from "node:fs"
import { Context, Effect, Layer, Option } from "effect"
import { type CniError, invalidConfig, ioFailure } from "@tscni/spec"
import { type InProcessPlugin, withInProcess } from "./inProcess.ts"

/** One plugin invocation: the binary, the verb, the CNI_* environment and the stdin JSON. */
export interface ExecRequest {
  readonly path: string
  /** the CNI verb, also passed as CNI_COMMAND in `env` */
  readonly command: string
  readonly env: Readonly<Record<string, string>>
  readonly stdin: string
}

/** What a plugin process left behind. */
export interface ExecOutput {
  readonly exitCode: number
  readonly stdout: string
  readonly stderr: string
}

/** The operations a PluginExec implementation provides; `find` is derived from `lookup`. */
export interface PluginExecShape {
  readonly exec: (request: ExecRequest) => Effect.Effect<ExecOutput, CniError>
  /** The path of the binary `type` in the first CNI_PATH directory holding it, if any. */
  readonly lookup: (type: string, cniPath: string) => Effect.Effect<Option.Option<string>, CniError>
  /** Like lookup, but "not found" is an error (what ADD wants). */
  readonly find: (type: string, cniPath: string) => Effect.Effect<string, CniError>
}

/** Splits CNI_PATH (colon-separated, empty entries ignored). */
export const cniPathDirs = (cniPath: string): ReadonlyArray<string> => cniPath.split(":").filter((dir) => dir !== "")

/** A plugin type is a file name, never a path: `../x` or `a/b` must not escape CNI_PATH. */
export const validatePluginType = (type: string): Effect.Effect<string, CniError> =>
  type === "" || type === "." || type === ".." || type.includes("/") || type.includes("\0")
    ? Effect.fail(invalidConfig("ipam.type", `not a plugin name: ${JSON.stringify(type)}`))
    : Effect.succeed(type)

/** Builds a PluginExecShape from exec and lookup, deriving find. */
export const makePluginExec = (
  impl: Pick<PluginExecShape, "exec" | "lookup">
): PluginExecShape => ({
  ...impl,
  find: (type, cniPath) =>
    impl.lookup(type, cniPath).pipe(
      Effect.flatMap(Option.match({
        onNone: () =>
          Effect.fail(ioFailure(`failed to find plugin ${JSON.stringify(type)} in path [${cniPathDirs(cniPath).join(" ")}]`)),
        onSome: Effect.succeed
      }))
    )
})

/**
 * The environment a delegated plugin gets, as libcni builds it: this process's
 * environment without any CNI_* variable, plus the request's CNI_* variables.
 */
export const childEnvironment = (
  inherited: Readonly<Record<string, string | undefined>>,
  request: Readonly<Record<string, string>>
): Record<string, string> => {
  const env: Record<string, string> = {}
  for (const [key, value] of Object.entries(inherited)) {
    if (value !== undefined && !key.startsWith("CNI_")) env[key] = value
  }
  return { ...env, ...request }
}

/** A plugin binary: an executable file (a dangling link or a directory is not one). */
const isExecutable = (path: string): boolean => {
  try {
    const info = statSync(path)
    return info.isFile() && (info.mode & 0o111) !== 0
  } catch {
    return false
  }
}

const lookupInPath = (type: string, cniPath: string): Effect.Effect<Option.Option<string>, CniError> =>
  Effect.map(validatePluginType(type), () => {
    for (const dir of cniPathDirs(cniPath)) {
      const path = `${dir.replace(/\/+$/, "")}/${type}`
      if (isExecutable(path)) return Option.some(path)
    }
    return Option.none()
  })

const spawnLazily = (request: ExecRequest): Effect.Effect<ExecOutput, CniError> =>
  Effect.flatMap(Effect.promise(() => import("./spawn.ts")), ({ spawnPlugin }) => spawnPlugin(request))

const real = makePluginExec({ exec: spawnLazily, lookup: lookupInPath })

/**
 * Runs delegated plugins (IPAM) as the CNI spec says: a binary found in CNI_PATH, the
 * request in the environment, the config on stdin. A service so steps stay testable
 * without processes (`layerFake` in ./testing/fakePluginExec.ts).
 */
export class PluginExec extends Context.Service<PluginExec, PluginExecShape>()("tscni/PluginExec") {
  /**
   * Real processes, spawned with Bun.spawn (./spawn.ts, loaded on the
   * first exec). Lookup in CNI_PATH is a plain stat of each candidate.
   */
  static readonly layer: Layer.Layer<PluginExec> = Layer.succeed(PluginExec)(real)

  /** Real processes, except tscni's own plugins found as this very executable: see withInProcess. */
  static readonly layerWithInProcess = (plugins: Readonly<Record<string, InProcessPlugin>>): Layer.Layer<PluginExec> =>
    Layer.succeed(PluginExec)(withInProcess(real, plugins))
}
