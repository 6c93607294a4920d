import { Effect, Layer, Stream } from "effect"
import * as ChildProcess from "effect/process/ChildProcess"
import { ChildProcessSpawner } from "effect/process/ChildProcessSpawner"
import * as BunChildProcessSpawner from "@effect/platform-bun/BunChildProcessSpawner"
import * as BunFileSystem from "@effect/platform-bun/BunFileSystem"
import * as BunPath from "@effect/platform-bun/BunPath"
import { CallerEnvironment, type CniError, ioFailure } from "@tscni/spec"
import { childEnvironment, type ExecOutput, type ExecRequest } from "./PluginExec.ts"

/**
 * Spawning a plugin process through Effect's platform layer. Its own module, loaded on the
 * first exec only: a plugin that never execs anything (bridge with in-process IPAM) never
 * pays for loading the process machinery.
 */

const collect = <E>(stream: Stream.Stream<Uint8Array, E>): Effect.Effect<string, E> =>
  Stream.mkString(Stream.decodeText(stream))

const spawner = BunChildProcessSpawner.layer.pipe(Layer.provideMerge(Layer.mergeAll(BunFileSystem.layer, BunPath.layer)))

/**
 * Runs one delegated plugin: the request's CNI_ variables replace the inherited ones, stdin
 * goes in, stdout/stderr/exit code come out; only failing to start it is an error.
 */
export const spawnPlugin = (request: ExecRequest): Effect.Effect<ExecOutput, CniError> =>
  Effect.scoped(Effect.gen(function*() {
    const processes = yield* ChildProcessSpawner
    const command = ChildProcess.make(request.path, [], {
      env: childEnvironment(yield* CallerEnvironment, request.env),
      extendEnv: false,
      stdin: Stream.make(new TextEncoder().encode(request.stdin))
    })
    const handle = yield* processes.spawn(command)
    const [stdout, stderr, exitCode] = yield* Effect.all(
      [collect(handle.stdout), collect(handle.stderr), handle.exitCode],
      { concurrency: "unbounded" }
    )
    return { exitCode: Number(exitCode), stdout, stderr }
  })).pipe(
    Effect.provide(spawner),
    Effect.mapError((error) => ioFailure(`failed to run plugin ${request.path} (${request.command})`, error.message))
  )
