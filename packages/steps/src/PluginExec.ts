import { Context, Effect, FileSystem, Layer, Option, Stream } from "effect"
import * as ChildProcess from "effect/process/ChildProcess"
import { ChildProcessSpawner } from "effect/process/ChildProcessSpawner"
import * as BunChildProcessSpawner from "@effect/platform-bun/BunChildProcessSpawner"
import * as BunFileSystem from "@effect/platform-bun/BunFileSystem"
import * as BunPath from "@effect/platform-bun/BunPath"
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

const collect = <E>(stream: Stream.Stream<Uint8Array, E>): Effect.Effect<string, E> =>
  Stream.mkString(Stream.decodeText(stream))

const makeReal = Effect.gen(function*() {
  const spawner = yield* ChildProcessSpawner
  const fs = yield* FileSystem.FileSystem

  const exec = (request: ExecRequest): Effect.Effect<ExecOutput, CniError> =>
    Effect.scoped(Effect.gen(function*() {
      const command = ChildProcess.make(request.path, [], {
        env: childEnvironment(process.env, request.env),
        extendEnv: false,
        stdin: Stream.make(new TextEncoder().encode(request.stdin))
      })
      const handle = yield* spawner.spawn(command)
      const [stdout, stderr, exitCode] = yield* Effect.all(
        [collect(handle.stdout), collect(handle.stderr), handle.exitCode],
        { concurrency: "unbounded" }
      )
      return { exitCode: Number(exitCode), stdout, stderr }
    })).pipe(
      Effect.mapError((error) => ioFailure(`failed to run plugin ${request.path} (${request.command})`, error.message))
    )

  const isExecutable = (path: string): Effect.Effect<boolean> =>
    fs.stat(path).pipe(
      Effect.map((info) => info.type === "File" && (info.mode & 0o111) !== 0),
      Effect.orElseSucceed(() => false)
    )

  const lookup = (type: string, cniPath: string): Effect.Effect<Option.Option<string>, CniError> =>
    Effect.gen(function*() {
      yield* validatePluginType(type)
      for (const dir of cniPathDirs(cniPath)) {
        const path = `${dir.replace(/\/+$/, "")}/${type}`
        if (yield* isExecutable(path)) return Option.some(path)
      }
      return Option.none()
    })

  return makePluginExec({ exec, lookup })
})

/**
 * Runs delegated plugins (IPAM) as the CNI spec says: a binary found in CNI_PATH, the
 * request in the environment, the config on stdin. A service so steps stay testable
 * without processes (`layerFake` in ./testing/fakePluginExec.ts).
 */
export class PluginExec extends Context.Service<PluginExec, PluginExecShape>()("tscni/PluginExec") {
  /**
   * Real processes, spawned through Bun. (BunServices.layer would do, but its published
   * types name an `effect/unstable/...` module that effect 4.1 lacks, erasing them to any.)
   */
  static readonly layer: Layer.Layer<PluginExec> = Layer.effect(PluginExec)(makeReal).pipe(
    Layer.provide(BunChildProcessSpawner.layer.pipe(Layer.provideMerge(Layer.mergeAll(BunFileSystem.layer, BunPath.layer))))
  )

  /** Real processes, except tscni's own plugins found as this very executable: see withInProcess. */
  static readonly layerWithInProcess = (plugins: Readonly<Record<string, InProcessPlugin>>): Layer.Layer<PluginExec> =>
    Layer.effect(PluginExec)(Effect.map(makeReal, (real) => withInProcess(real, plugins))).pipe(
      Layer.provide(BunChildProcessSpawner.layer.pipe(Layer.provideMerge(Layer.mergeAll(BunFileSystem.layer, BunPath.layer))))
    )
}
