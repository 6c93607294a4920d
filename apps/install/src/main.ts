/**
 * tscni-install: copies the tscni plugins into a node's CNI bin dir (and a conflist into
 * its conf dir) as one pipeline of reversible steps; see HELP in ./cli.ts.
 */
import { dirname, resolve } from "node:path"
import { Cause, Effect, Exit, Fiber, Layer } from "effect"
import { PluginExec } from "@tscni/steps/PluginExec"
import { HELP, parseArgs } from "./cli.ts"
import { HostFs } from "./HostFs.ts"
import { runInstall } from "./install.ts"
import { failureText, RunFailed } from "./outcome.ts"
import { Reporter } from "./Reporter.ts"
import { runUninstall } from "./uninstall.ts"

/** A compiled binary runs from Bun's embedded file system; its binaries are its neighbours. */
const defaultSource = (): string =>
  Bun.main.startsWith("/$bunfs/") ? dirname(process.execPath) : resolve("dist/bin")

// A reader that went away (`| head`) is not a reason to stop, or roll back, an install.
process.stdout.on("error", () => {})

const command = parseArgs(process.argv.slice(2), process.env, defaultSource())

const main = async (): Promise<number> => {
  switch (command.kind) {
    case "help":
      process.stdout.write(HELP)
      return 0
    case "usage":
      process.stderr.write(`tscni-install: ${command.message}\n(see tscni-install --help)\n`)
      return 2
    case "install":
    case "uninstall":
      break
  }
  const program = command.kind === "install" ? runInstall(command.options) : runUninstall(command)
  const layer = Layer.mergeAll(HostFs.layer, PluginExec.layer, Reporter.layer)
  const fiber = Effect.runFork(Effect.provide(program, layer))
  // An interrupted install rolls back like a failed one.
  const interrupt = () => void Effect.runFork(Fiber.interrupt(fiber))
  process.once("SIGTERM", interrupt)
  process.once("SIGINT", interrupt)
  const exit = await Effect.runPromise(Fiber.await(fiber))
  process.removeListener("SIGTERM", interrupt)
  process.removeListener("SIGINT", interrupt)
  if (Exit.isSuccess(exit)) return 0
  const failure = exit.cause.reasons.find(Cause.isFailReason)
  const failed = failure !== undefined && failure.error instanceof RunFailed
    ? failure.error
    : new RunFailed({
      command: command.kind,
      stage: "apply",
      reason: "Unknown",
      message: "interrupted or crashed; see the lines above for what was undone",
      rollbackFailures: []
    })
  process.stderr.write(failureText(failed).join("\n") + "\n")
  return failed.reason === "Usage" ? 2 : 1
}

process.exitCode = await main()
