import { Effect } from "effect"
import { CallerEnvironment, type CniError, ioFailure } from "@tscni/spec"
import { childEnvironment, type ExecOutput, type ExecRequest } from "./PluginExec.ts"

/**
 * Spawning a plugin process, with Bun's own Bun.spawn. Its own module, loaded on the first
 * exec only. Not Effect's ChildProcess layer: on the start-up path of a plugin that execs
 * its IPAM, building that layer and its streams cost ~20 ms more than the spawn itself
 * (docs/bench/README.md).
 */

const failed = (request: ExecRequest) => (error: unknown) =>
  ioFailure(`failed to run plugin ${request.path} (${request.command})`, error instanceof Error ? error.message : String(error))

/**
 * Runs one delegated plugin: the request's CNI_ variables replace the inherited ones (the
 * caller's environment), stdin goes in, stdout/stderr/exit code come out; only failing to
 * start it is an error. Interrupted (the caller killed), the child is killed too.
 */
export const spawnPlugin = (request: ExecRequest): Effect.Effect<ExecOutput, CniError> =>
  Effect.gen(function*() {
    const inherited = yield* CallerEnvironment
    return yield* Effect.acquireUseRelease(
      Effect.try({
        try: () =>
          Bun.spawn([request.path], {
            env: childEnvironment(inherited, request.env),
            stdin: Buffer.from(request.stdin),
            stdout: "pipe",
            stderr: "pipe"
          }),
        catch: failed(request)
      }),
      (child) =>
        Effect.tryPromise({
          try: () => Promise.all([new Response(child.stdout).text(), new Response(child.stderr).text(), child.exited]),
          catch: failed(request)
        }).pipe(Effect.map(([stdout, stderr, exitCode]) => ({ exitCode, stdout, stderr }))),
      (child) => Effect.sync(() => void (child.exitCode === null && child.kill()))
    )
  })
