import { Cause, Effect, Exit, Fiber, Layer } from "effect"
import {
  CallerEnvironment,
  CniError,
  ErrorCode,
  decodeResult,
  encodeResult,
  errorResult,
  incompatibleVersion,
  internalError,
  interfaceNameProblem,
  invalidConfig,
  ioFailure,
  isSupportedVersion,
  LATEST_VERSION,
  parseConfigJson,
  decodeNetConf,
  verbSupported,
  versionInfo
} from "@tscni/spec"
import { Pipeline } from "@tscni/engine"
import { type CniEnv, readCniEnv, refuseUnknownArgs } from "./env.ts"
import { knownErrorToCni } from "./errors.ts"
import { loggingLayer } from "./logging.ts"
import type { PluginDefinition, PluginRequest } from "./plugin.ts"

/** What the process prints on stdout and exits with. */
export interface Outcome {
  readonly stdout: string
  readonly exitCode: number
}

/**
 * One plugin call's inputs, taken as values rather than from process globals so tests can
 * drive handleInvocation directly.
 */
export interface Invocation {
  readonly env: Record<string, string | undefined>
  readonly stdin: Effect.Effect<string, CniError>
}

const json = (value: unknown): string => JSON.stringify(value) + "\n"

const isObject = (value: unknown): value is Record<string, unknown> =>
  typeof value === "object" && value !== null && !Array.isArray(value)


/** Human text for an undo failure list attached by the engine (RollbackIncomplete). */
const rollbackDetails = (cause: Cause.Cause<unknown>): string | undefined => {
  const notes: Array<string> = []
  for (const reason of cause.reasons) {
    const value = Cause.isDieReason(reason) ? reason.defect : undefined
    if (value instanceof Pipeline.RollbackIncomplete) {
      for (const failure of value.failures) notes.push(`${failure.step}: ${failure.message}`)
    }
  }
  return notes.length > 0 ? `rollback incomplete: ${notes.join("; ")}` : undefined
}

/**
 * Turns any failure into a CNI error: a CniError as it is; anything else is a bug or an
 * unexpected condition, reported as code 100 with its message (never a stack trace).
 */
export const errorFromCause = (cause: Cause.Cause<unknown>): CniError => {
  const rollback = rollbackDetails(cause)
  const failure = cause.reasons.find(Cause.isFailReason)
  const known = failure ? knownErrorToCni(failure.error) : undefined
  const base = known
    ? known
    : Cause.hasInterruptsOnly(cause)
    ? internalError("interrupted")
    : internalError(describe(failure ? failure.error : Cause.squash(cause)))
  if (rollback === undefined) return base
  const details = base.details === undefined ? rollback : `${base.details}; ${rollback}`
  return new CniError({ code: base.code, msg: base.msg, details })
}

const describe = (error: unknown): string => {
  if (error instanceof Error) return error.message
  if (isObject(error) && typeof error.message === "string") return error.message
  return String(error)
}

const buildRequest = (env: CniEnv, stdin: string, onVersion: (version: string) => void) =>
  Effect.gen(function*() {
    const raw = yield* parseConfigJson(stdin)
    const conf = yield* decodeNetConf(raw)
    if (!isSupportedVersion(conf.cniVersion)) return yield* incompatibleVersion(conf.cniVersion)
    // Errors from here on answer in the config's version.
    onVersion(conf.cniVersion)
    if (!verbSupported(env.command, conf.cniVersion)) {
      return yield* new CniError({
        code: ErrorCode.IncompatibleVersion,
        msg: `cniVersion ${conf.cniVersion} does not support ${env.command}`
      })
    }
    const prevResult = conf.prevResult === undefined ? undefined : yield* decodeResult(conf.prevResult, conf.cniVersion)
    // a name the kernel would refuse (64 KB of it, a NUL) is refused before a plugin acts on it
    for (const [i, entry] of (prevResult?.interfaces ?? []).entries()) {
      const problem = interfaceNameProblem(entry.name)
      const shown = entry.name.length > 40 ? `${entry.name.slice(0, 40)}…` : entry.name
      if (problem !== undefined) return yield* invalidConfig(`prevResult.interfaces[${i}].name`, `${JSON.stringify(shown)} ${problem}`)
    }
    if (env.command === "CHECK" && prevResult === undefined) {
      return yield* invalidConfig("prevResult", "required for CHECK")
    }
    // decodeNetConf accepted it, so it is an object
    const request: PluginRequest = { env, conf, raw: isObject(raw) ? raw : {}, prevResult }
    return request
  })

/**
 * One invocation from env + stdin to stdout + exit code. Pure of process globals, so tests
 * drive it directly; `runBound` wires it to the real process.
 */
export const handleInvocation = <R>(
  plugin: PluginDefinition<R>,
  invocation: Invocation
): Effect.Effect<Outcome, never, R> =>
  Effect.gen(function*() {
    let version = LATEST_VERSION as string
    const program = Effect.gen(function*() {
      const env = yield* readCniEnv(invocation.env)
      if (env.command === "VERSION") return json(versionInfo())
      if (plugin.cniArgs !== undefined) yield* refuseUnknownArgs(env, plugin.cniArgs)
      const request = yield* buildRequest(env, yield* invocation.stdin, (known) => (version = known))
      switch (env.command) {
        case "ADD": {
          const result = yield* plugin.add(request)
          // A result that cannot be reported fails the ADD after its work is done: undo it
          // with the plugin's DEL, so this failure too leaves the host as it was. A DEL
          // that fails too is said in the error, never dropped.
          const encoded = yield* encodeResult(result, version).pipe(
            Effect.catchTag("CniError", (error) =>
              plugin.del(request).pipe(
                Effect.matchCauseEffect({
                  onSuccess: () => Effect.fail(error),
                  onFailure: (cause) =>
                    Effect.fail(
                      new CniError({
                        code: error.code,
                        msg: error.msg,
                        details: `${error.details === undefined ? "" : `${error.details}; `}undoing the ADD failed too, something may be left: ${
                          Cause.pretty(cause).split("\n")[0]
                        }`
                      })
                    )
                })
              ))
          )
          return json(encoded)
        }
        case "CHECK":
          yield* plugin.check(request)
          return ""
        case "DEL":
          yield* plugin.del(request)
          return ""
        case "GC":
          if (plugin.gc) yield* plugin.gc(request)
          return ""
        case "STATUS":
          if (plugin.status) yield* plugin.status(request)
          return ""
      }
    })
    const exit = yield* Effect.exit(program)
    if (Exit.isSuccess(exit)) return { stdout: exit.value, exitCode: 0 }
    const error = errorFromCause(exit.cause)
    yield* Effect.logWarning(`${plugin.name}: ${error.msg}`).pipe(Effect.annotateLogs({ code: error.code }))
    // The full cause (with stack traces) only with TSCNI_LOG=debug; never on stdout.
    yield* Effect.logDebug(Cause.pretty(exit.cause))
    return { stdout: json(errorResult(error, version)), exitCode: 1 }
  })

const readStdin: Effect.Effect<string, CniError> = Effect.tryPromise({
  try: () => Bun.stdin.text(),
  catch: (error) => ioFailure(`reading stdin: ${describe(error)}`)
})

/**
 * A plugin bound to the services it runs on (the real kernel, the store on disk): one call
 * from env + stdin to its outcome, never failing. What a plugin process runs once and the
 * resident daemon runs per request. `log` receives the log lines (else stderr or
 * TSCNI_LOG_FILE); `note` is logged at debug level first.
 */
export interface BoundPlugin {
  readonly name: string
  readonly invoke: (invocation: Invocation, options?: { readonly log?: (line: string) => void; readonly note?: string }) => Effect.Effect<Outcome>
}

/** Binds a plugin to a layer providing what it needs; a layer that fails to build is the call's error. */
export const bindPlugin = <R, LE>(plugin: PluginDefinition<R>, layer: Layer.Layer<R, LE>): BoundPlugin => ({
  name: plugin.name,
  invoke: (invocation, options) =>
    (options?.note === undefined ? Effect.void : Effect.logDebug(options.note)).pipe(
      Effect.andThen(handleInvocation(plugin, invocation)),
      Effect.provide(Layer.mergeAll(layer, loggingLayer(invocation.env, options?.log))),
      // what a delegated plugin inherits: this call's environment, not the process's
      Effect.provideService(CallerEnvironment, invocation.env),
      Effect.catchCause((cause) =>
        Cause.hasInterruptsOnly(cause)
          ? Effect.failCause(cause)
          : Effect.succeed({ stdout: json(errorResult(errorFromCause(cause), LATEST_VERSION)), exitCode: 1 })
      ),
      Effect.orDie
    )
})

/**
 * The plugin process: runs one invocation, prints the outcome, sets the exit code.
 * SIGTERM/SIGINT interrupt the work, so an interrupted ADD still rolls back. `stdin` when
 * the caller has read it already (the multicall binary, before asking the daemon).
 */
/** What `<plugin> --help` prints. */
const pluginUsage = (name: string): string => `usage: CNI_COMMAND=ADD|CHECK|DEL|GC|STATUS|VERSION CNI_CONTAINERID=… CNI_NETNS=… CNI_IFNAME=… CNI_PATH=… ${name} < config.json

${name}: a CNI plugin of tscni. A container runtime runs it with the request in CNI_*
environment variables (CNI_ARGS optional) and the network configuration on stdin; it
answers with a result or a CNI error as JSON on stdout. Supported CNI versions: ${versionInfo().supportedVersions.join(", ")}.
Logs go to stderr (TSCNI_LOG=debug traces every step) or TSCNI_LOG_FILE.
Its keys: docs/plugins/${name}.md. To run it by hand, see \`cni --help\` (tscni's runtime CLI).
`

export const runBound = (bound: BoundPlugin, stdin?: string): Promise<void> => {
  const env = process.env
  // a person asking, not a runtime calling (runtimes always set CNI_COMMAND)
  if ((env.CNI_COMMAND ?? "") === "" && process.argv.slice(1).some((arg) => arg === "--help" || arg === "-h")) {
    return Bun.write(Bun.stdout, pluginUsage(bound.name)).then(() => process.exit(0))
  }
  // performance.now() counts from process start: how much of a call is loading code
  const note = `${bound.name}: code loaded ${performance.now().toFixed(1)} ms after process start`
  const fiber = Effect.runFork(bound.invoke({ env, stdin: stdin === undefined ? readStdin : Effect.succeed(stdin) }, { note }))
  const interrupt = () => Effect.runFork(Fiber.interrupt(fiber))
  process.once("SIGTERM", interrupt)
  process.once("SIGINT", interrupt)
  return Effect.runPromise(Fiber.await(fiber)).then(async (exit) => {
    const outcome: Outcome = Exit.isSuccess(exit)
      ? exit.value
      : { stdout: json(errorResult(errorFromCause(exit.cause), LATEST_VERSION)), exitCode: 1 }
    if (outcome.stdout !== "") await Bun.write(Bun.stdout, outcome.stdout)
    process.removeListener("SIGTERM", interrupt)
    process.removeListener("SIGINT", interrupt)
    // Everything is written and nothing else is owed: exit now rather than wait for the
    // runtime to wind down (measured at up to 10 ms for a plugin that opened sockets).
    process.exit(outcome.exitCode)
  })
}
