/**
 * `--dry-run`: the list runs in this process against a fresh model kernel (MockBackend,
 * seeded with the pod's namespace) and a scratch IPAM store, with tscni's own plugins
 * in-process. What each plugin did is recorded: the engine's step trace lines and the
 * model kernel's diff across the plugin. Nothing on the host changes and no cache entry
 * is written. A DEL is planned against the state a simulated ADD left.
 */
import { mkdtempSync, rmSync } from "node:fs"
import { tmpdir } from "node:os"
import { basename, join } from "node:path"
import { Effect, Exit, Layer, Logger, References } from "effect"
import { Backend } from "@tscni/backend"
import { makeMockBackend } from "@tscni/backend-mock"
import { diskStoreLayer } from "@tscni/ipam"
import { type CniError, invalidConfig } from "@tscni/spec"
import type { ExecOutput, ExecRequest } from "@tscni/steps"
import { addChain, type Attachment, type ChainSpec, delChain, toListVersion } from "../chain.ts"
import { loadNetwork } from "../conflist.ts"
import type { CommandError } from "../errors.ts"
import { pluginVersions, Progress } from "../invoke.ts"
import { NETNS_DIR } from "../netns.ts"
import { negotiateListVersion } from "../version.ts"
import { inProcessExec } from "./inprocess.ts"
import { IN_PROCESS_TYPES, inProcessPlugins } from "./plugins.ts"

/** One plugin run of the plan, with the runs it delegated (IPAM). */
export interface PlanEntry {
  readonly type: string
  readonly verb: string
  ok: boolean
  readonly steps: Array<string>
  changes: ReadonlyArray<string>
  readonly notes: Array<string>
  readonly delegated: Array<PlanEntry>
}

/** What a dry run found. */
export interface DryRunReport {
  readonly verb: "ADD" | "DEL"
  readonly network: string
  readonly cniVersion: string
  readonly netns: string
  readonly entries: ReadonlyArray<PlanEntry>
  /** ADD: the final result */
  readonly result?: unknown
  readonly error?: CommandError
}

/** A dry run's request. */
export interface DryRunInput {
  readonly verb: "ADD" | "DEL"
  readonly confDir: string
  readonly network: string
  readonly attachment: Attachment
}

const IN_PROCESS_PATH = "tscni-in-process"

const text = (message: unknown): string => (Array.isArray(message) ? message.map(String).join(" ") : String(message))

/** Records plugin runs; `enabled` off while seeding a DEL. */
const makeRecorder = (control: ReturnType<typeof makeMockBackend>["control"]) => {
  const entries: Array<PlanEntry> = []
  const stack: Array<PlanEntry> = []
  const state = { enabled: true }
  const around = (request: ExecRequest, run: Effect.Effect<ExecOutput, CniError>) => {
    if (!state.enabled || request.command === "VERSION") return run
    return Effect.suspend(() => {
      const parent = stack.at(-1)
      const entry: PlanEntry = {
        type: request.path.slice(request.path.indexOf(":") + 1),
        verb: request.command,
        ok: false,
        steps: [],
        changes: [],
        notes: [],
        delegated: []
      }
      ;(parent === undefined ? entries : parent.delegated).push(entry)
      stack.push(entry)
      const before = control.snapshot()
      return Effect.exit(run).pipe(
        Effect.flatMap((exit) =>
          Effect.sync(() => {
            stack.pop()
            entry.ok = Exit.isSuccess(exit) && exit.value.exitCode === 0
            if (parent === undefined) entry.changes = control.diff(before, control.snapshot())
            return exit
          })
        ),
        Effect.flatten
      )
    })
  }
  const logger = Logger.make((options) => {
    const line = text(options.message)
    const target = stack.at(-1)
    if (target === undefined) return
    if (line.startsWith("step ")) target.steps.push(line)
    else if (options.logLevel !== "Debug" && options.logLevel !== "Trace") target.notes.push(line)
  })
  return { entries, around, logger, state }
}

/** The mock's name for a netns argument: only named namespaces (/var/run/netns/NAME) can be modelled. */
const mockNetnsName = (path: string): Effect.Effect<string, CniError> => {
  const normalized = path.startsWith("/run/netns/") ? `/var${path}` : path
  return normalized === join(NETNS_DIR, basename(normalized))
    ? Effect.succeed(basename(normalized))
    : Effect.fail(invalidConfig("NETNS", `a dry run models named namespaces (${NETNS_DIR}/NAME) only, not ${path}`))
}

/** Runs the dry run and returns its report (a failing plugin is in the report, not an error). */
export const dryRun = (input: DryRunInput): Effect.Effect<DryRunReport, CniError> =>
  Effect.gen(function*() {
    const loaded = yield* loadNetwork(input.confDir, input.network)
    const unknown = [...new Set(loaded.plugins.map((p) => p.type))].filter((t) => !IN_PROCESS_TYPES.includes(t))
    if (unknown.length > 0) {
      return yield* invalidConfig(
        "--dry-run",
        `plugin(s) ${unknown.join(", ")} of network ${loaded.list.name} cannot run in-process (tscni's own: ${IN_PROCESS_TYPES.join(", ")})`
      )
    }
    const name = yield* mockNetnsName(input.attachment.netns)
    const { backend, control } = makeMockBackend()
    const netns = yield* backend.createNetns(name).pipe(Effect.orDie)
    const attachment: Attachment = { ...input.attachment, netns }
    const recorder = makeRecorder(control)

    return yield* Effect.acquireUseRelease(
      Effect.sync(() => mkdtempSync(join(tmpdir(), "tscni-dryrun-"))),
      (scratch) => {
        const services = Layer.mergeAll(
          inProcessExec(inProcessPlugins(scratch), scratch, recorder.around).pipe(
            Layer.provide(Layer.mergeAll(Layer.succeed(Backend)(backend), diskStoreLayer))
          ),
          Progress.silent,
          Logger.layer([recorder.logger]),
          Layer.succeed(References.MinimumLogLevel)("Debug")
        )
        return Effect.gen(function*() {
          const cniVersion = yield* negotiateListVersion(
            loaded.list,
            (type) => pluginVersions(type, IN_PROCESS_PATH, loaded.list.cniVersion)
          )
          const spec: ChainSpec = { name: loaded.list.name, cniVersion, plugins: loaded.plugins, cniPath: IN_PROCESS_PATH }
          const base = { verb: input.verb, network: spec.name, cniVersion, netns }
          if (input.verb === "ADD") {
            const exit = yield* Effect.exit(addChain(spec, attachment))
            return Exit.isSuccess(exit)
              ? { ...base, entries: recorder.entries, result: exit.value }
              : { ...base, entries: recorder.entries, error: yield* failureOf(exit) }
          }
          recorder.state.enabled = false
          const seeded = yield* Effect.exit(addChain(spec, attachment))
          recorder.state.enabled = true
          if (Exit.isFailure(seeded)) return { ...base, entries: recorder.entries, error: yield* failureOf(seeded) }
          const cached = yield* toListVersion(seeded.value, cniVersion).pipe(Effect.orElseSucceed(() => undefined))
          const exit = yield* Effect.exit(delChain(spec, attachment, cached))
          return Exit.isSuccess(exit)
            ? { ...base, entries: recorder.entries }
            : { ...base, entries: recorder.entries, error: yield* failureOf(exit) }
        }).pipe(Effect.provide(services))
      },
      (scratch) => Effect.sync(() => rmSync(scratch, { recursive: true, force: true }))
    )
  })

const failureOf = <A, E extends CommandError>(exit: Exit.Exit<A, E>): Effect.Effect<CommandError> =>
  Exit.isFailure(exit)
    ? Effect.succeed(
      exit.cause.reasons.flatMap((r) => (r._tag === "Fail" ? [r.error] : []))[0] ??
        invalidConfig("", `dry run died: ${String(exit.cause)}`)
    )
    : Effect.die("not a failure")

const indent = (lines: ReadonlyArray<string>, prefix: string): ReadonlyArray<string> => lines.map((l) => `${prefix}${l}`)

/** The plan for humans: every plugin in order, its steps and what changed in the model kernel. */
export const formatPlan = (report: DryRunReport, attachment: Pick<Attachment, "containerId" | "ifname">): string => {
  const lines = [
    `dry run: ${report.verb} network ${report.network} (cniVersion ${report.cniVersion}) for container ${attachment.containerId}, ifname ${attachment.ifname}, netns ${report.netns}`,
    "nothing on this host is changed: a model kernel and a scratch IPAM store stand in for it",
    ...(report.verb === "DEL" ? ["the model kernel holds what a simulated ADD of the same attachment left"] : []),
    ""
  ]
  const delegated = (entry: PlanEntry, prefix: string): ReadonlyArray<string> =>
    entry.delegated.flatMap((d) => [
      `${prefix}↳ delegated to ${d.type} ${d.verb}: ${d.ok ? "ok" : "failed"}`,
      ...indent(d.notes, `${prefix}  note: `),
      ...delegated(d, `${prefix}  `)
    ])
  report.entries.forEach((entry, i) => {
    lines.push(`${i + 1}. ${entry.type} ${entry.verb} ${entry.ok ? "ok" : "failed"}`)
    lines.push(...indent(entry.steps, "   "))
    lines.push(...delegated(entry, "   "))
    lines.push(...indent(entry.notes, "   note: "))
    if (entry.changes.length > 0) {
      lines.push("   changes:")
      lines.push(...indent(entry.changes, "     "))
    } else {
      lines.push("   changes: none")
    }
  })
  return lines.join("\n")
}
