/**
 * The `cni` binary: tscni's runtime CLI. Real plugin processes (PluginExec), progress
 * lines on stderr, and Bun's platform services for the CLI itself.
 */
import { Effect, Layer } from "effect"
import * as BunChildProcessSpawner from "@effect/platform-bun/BunChildProcessSpawner"
import * as BunFileSystem from "@effect/platform-bun/BunFileSystem"
import * as BunPath from "@effect/platform-bun/BunPath"
import * as BunStdio from "@effect/platform-bun/BunStdio"
import * as BunTerminal from "@effect/platform-bun/BunTerminal"
import { PluginExec } from "@tscni/steps"
import { runCli } from "./cli.ts"
import { Progress } from "./invoke.ts"

const platform = Layer.mergeAll(
  BunChildProcessSpawner.layer,
  BunTerminal.layer,
  BunStdio.layer
).pipe(Layer.provideMerge(Layer.mergeAll(BunFileSystem.layer, BunPath.layer)))

const program = runCli(process.argv.slice(2)).pipe(
  Effect.provide(Layer.mergeAll(platform, PluginExec.layer, Progress.stderr)),
  // a usage error: effect/cli has printed it with the help
  Effect.catch(() => Effect.sync(() => void (process.exitCode = 2)))
)

Effect.runPromise(program).catch((error: unknown) => {
  process.stderr.write(`cni: ${error instanceof Error ? error.message : String(error)}\n`)
  process.exitCode = 1
})
