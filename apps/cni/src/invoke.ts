/**
 * Running one plugin of a list for one verb, through the PluginExec service (a real
 * binary from the bin dirs, or an in-process plugin in a dry run): find it, pass the
 * request in CNI_* variables and the config on stdin, turn its answer into a result JSON
 * or a PluginFailed, and report a progress line.
 */
import { Clock, Context, Effect, Layer, Option } from "effect"
import { type CniError, decodeFailure, ioFailure } from "@tscni/spec"
import { type ExecOutput, PluginExec, pluginError } from "@tscni/steps"
import { PluginFailed, pluginFailed } from "./errors.ts"

/** The CNI verbs a runtime sends. */
export type ChainVerb = "ADD" | "CHECK" | "DEL" | "GC" | "STATUS" | "VERSION"

/** Where the plugins are: the CNI_PATH string (colon-separated bin dirs). */
export interface PluginRequestEnv {
  readonly containerId: string
  readonly netns: string
  readonly ifname: string
  /** CNI_ARGS */
  readonly args: string
  /** CNI_PATH */
  readonly path: string
}

/** One plugin invocation. */
export interface Invocation {
  readonly type: string
  readonly verb: ChainVerb
  readonly env: PluginRequestEnv
  readonly config: Readonly<Record<string, unknown>>
}

/** Progress lines (`bridge ADD… ok (34 ms)`) for multi-plugin work; stderr in the CLI. */
export class Progress extends Context.Service<Progress, { readonly line: (text: string) => Effect.Effect<void> }>()(
  "tscni/cni/Progress"
) {
  static readonly stderr: Layer.Layer<Progress> = Layer.succeed(Progress)({
    line: (text) => Effect.sync(() => void process.stderr.write(text + "\n"))
  })
  static readonly silent: Layer.Layer<Progress> = Layer.succeed(Progress)({ line: () => Effect.void })
  /** Collects the lines (tests). */
  static readonly collect = (lines: Array<string>): Layer.Layer<Progress> =>
    Layer.succeed(Progress)({ line: (text) => Effect.sync(() => void lines.push(text)) })
}

/** The process environment a plugin gets for a verb (GC, STATUS and VERSION carry no attachment). */
export const pluginEnvironment = (verb: ChainVerb, env: PluginRequestEnv): Record<string, string> =>
  verb === "GC" || verb === "STATUS" || verb === "VERSION"
    ? { CNI_COMMAND: verb, CNI_PATH: env.path }
    : {
      CNI_COMMAND: verb,
      CNI_CONTAINERID: env.containerId,
      CNI_NETNS: env.netns,
      CNI_IFNAME: env.ifname,
      CNI_ARGS: env.args,
      CNI_PATH: env.path
    }

const excerpt = (output: ExecOutput): string =>
  [output.stderr.trim(), output.stdout.trim()].filter((t) => t !== "").join("\n").slice(0, 2000)

const parseJson = (text: string): Option.Option<unknown> => {
  const trimmed = text.trim()
  return trimmed === "" ? Option.none() : Option.liftThrowable((): unknown => JSON.parse(trimmed))()
}

/** The answer of a finished plugin process: its JSON on success, its CNI error otherwise. */
export const interpretOutput = (type: string, verb: ChainVerb, output: ExecOutput): Effect.Effect<unknown, CniError> => {
  const error = pluginError(output)
  if (Option.isSome(error)) return Effect.fail(error.value)
  if (output.exitCode !== 0) {
    return Effect.fail(ioFailure(`plugin ${type} ${verb} exited with code ${output.exitCode} and no CNI error`, excerpt(output)))
  }
  if (verb !== "ADD" && verb !== "VERSION") return Effect.succeed(undefined)
  const json = parseJson(output.stdout)
  if (Option.isNone(json)) return Effect.fail(decodeFailure(`plugin ${type} ${verb} printed no JSON`, excerpt(output)))
  return Effect.succeed(json.value)
}

const forwardStderr = (output: ExecOutput): Effect.Effect<void> =>
  process.env.TSCNI_LOG !== undefined && output.stderr.trim() !== ""
    ? Effect.sync(() => void process.stderr.write(output.stderr.endsWith("\n") ? output.stderr : output.stderr + "\n"))
    : Effect.void

/**
 * Runs one verb of one plugin. The answer is the plugin's stdout JSON for ADD and
 * VERSION, undefined otherwise; any failure is a PluginFailed naming plugin and verb.
 * With `report`, a progress line is written when it is done.
 */
export const invokePlugin = (
  invocation: Invocation,
  options: { readonly report: boolean }
): Effect.Effect<unknown, PluginFailed, PluginExec | Progress> =>
  Effect.gen(function*() {
    const exec = yield* PluginExec
    const progress = yield* Progress
    const start = yield* Clock.currentTimeMillis
    const exit = yield* Effect.exit(
      Effect.gen(function*() {
        const path = yield* exec.find(invocation.type, invocation.env.path)
        const output = yield* exec.exec({
          path,
          command: invocation.verb,
          env: pluginEnvironment(invocation.verb, invocation.env),
          stdin: JSON.stringify(invocation.config)
        })
        yield* forwardStderr(output)
        return yield* interpretOutput(invocation.type, invocation.verb, output)
      }).pipe(Effect.mapError((error) => pluginFailed(invocation.type, invocation.verb, error)))
    )
    if (options.report) {
      const ms = (yield* Clock.currentTimeMillis) - start
      yield* progress.line(`${invocation.type} ${invocation.verb}… ${exit._tag === "Success" ? "ok" : "failed"} (${ms} ms)`)
    }
    return yield* exit
  })

/** A plugin's VERSION answer (`supportedVersions`), asked with the list's cniVersion. */
export const pluginVersions = (
  type: string,
  cniPath: string,
  cniVersion: string
): Effect.Effect<ReadonlyArray<string>, PluginFailed, PluginExec | Progress> =>
  invokePlugin(
    {
      type,
      verb: "VERSION",
      env: { containerId: "", netns: "", ifname: "", args: "", path: cniPath },
      config: { cniVersion }
    },
    { report: false }
  ).pipe(
    Effect.flatMap((json) => {
      const versions = typeof json === "object" && json !== null && "supportedVersions" in json ? json.supportedVersions : undefined
      return Array.isArray(versions) && versions.every((v) => typeof v === "string")
        ? Effect.succeed<ReadonlyArray<string>>(versions)
        : Effect.fail(new PluginFailed({ plugin: type, verb: "VERSION", code: 6, msg: "VERSION answer has no supportedVersions" }))
    })
  )
