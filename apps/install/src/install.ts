/**
 * The install as one pipeline of reversible steps: dirs, binaries, links, VERSION checks,
 * conflist, record. A failure anywhere (or SIGTERM) undoes every step already applied.
 */
import { basename } from "node:path"
import { Effect, Option } from "effect"
import { eachOf, Pipeline } from "@tscni/engine"
import type { PluginExec } from "@tscni/steps/PluginExec"
import type { InstallError } from "./errors.ts"
import { HostFs } from "./HostFs.ts"
import { toRunFailed, type RunFailed } from "./outcome.ts"
import { decide, digestOf, ensureDir, installFile, installLink, missingDirs, type Placed, type Content } from "./place.ts"
import { type InstallOptions, type InstallPlan, makePlan } from "./plan.ts"
import { recordPath, type RecordBody, writeRecord } from "./record.ts"
import { reported } from "./report.ts"
import { Reporter } from "./Reporter.ts"
import { REQUIRED_VERSION, verifyPlugin } from "./verify.ts"

/** How a placed entry came about, for the output: `new`, `unchanged`, `replaced …`. */
export const placedNote = (placed: Placed): string =>
  !placed.changed
    ? "unchanged"
    : placed.backup === null
    ? "new"
    : `replaced; the previous one is kept as ${basename(placed.backup)}`

const undoPlaced = (placed: Placed): string =>
  placed.backup === null ? `remove ${placed.path}` : `restore ${placed.path} from ${basename(placed.backup)}`

const fileStep = reported(installFile, {
  doing: (input) => `install ${input.path}`,
  done: (placed) => `install ${placed.path} (${placedNote(placed)})`,
  undoing: undoPlaced
})

const linkStep = reported(installLink, {
  doing: (input) => `link ${input.path} -> ${input.target}`,
  done: (placed) => `link ${placed.path} -> ${placed.digest} (${placedNote(placed)})`,
  undoing: undoPlaced
})

const dirStep = reported(ensureDir, {
  doing: (input) => `mkdir ${input.path}`,
  done: (made) => made.created.length === 0 ? `dir ${made.path} (exists)` : `mkdir ${made.created.join(" ")}`,
  undoing: (made) => made.created.length === 0 ? undefined : `rmdir ${[...made.created].reverse().join(" ")}`
})

const verifyStep = reported(verifyPlugin, {
  doing: (input) => `verify ${input.name} (${input.path})`,
  done: (verified) => `verify ${verified.name}: VERSION lists ${verified.supportedVersions.join(", ")}`,
  undoing: () => undefined
})

const recordStep = reported(writeRecord, {
  doing: (input) => `record ${recordPath(input.binDir)}`,
  done: (placed) => `record ${placed.path}`,
  undoing: undoPlaced
})

/** The record of a run, from the handles; undefined when the run changed nothing. */
const recordInput = (
  plan: InstallPlan,
  handles: {
    readonly dirs: ReadonlyArray<{ readonly created: ReadonlyArray<string> }>
    readonly files: ReadonlyArray<Placed>
    readonly links: ReadonlyArray<Placed>
    readonly conflist?: Placed
  }
): { readonly binDir: string; readonly body: RecordBody } | undefined => {
  const placed = [...handles.files, ...handles.links, ...(handles.conflist === undefined ? [] : [handles.conflist])]
  const entries = placed.filter((entry) => entry.changed)
  const createdDirs = handles.dirs.flatMap((made) => made.created)
  if (entries.length === 0 && createdDirs.length === 0) return undefined
  return {
    binDir: plan.binDir,
    body: {
      tool: "tscni-install",
      format: 1,
      time: plan.time,
      mode: plan.mode,
      binDir: plan.binDir,
      confDir: plan.confDir,
      plugins: plan.plugins,
      createdDirs,
      entries
    }
  }
}

/** The install pipeline. Its step keys are what `--dry-run` and the docs list. */
export const installPipeline = Pipeline.make<InstallPlan>("install")
  .step("dirs", eachOf(dirStep), (plan) => plan.dirs)
  .step("files", eachOf(fileStep), (plan) => plan.files)
  .step("links", eachOf(linkStep), (plan) => plan.links)
  .step("verify", eachOf(verifyStep), (plan) => plan.verify)
  .optionalStep("conflist", fileStep, (plan) => plan.conflist ?? Pipeline.skip)
  .optionalStep("record", recordStep, (plan, handles) => recordInput(plan, handles) ?? Pipeline.skip)

/** What placing content at path would do, as one plan line. */
const previewPlace = (verb: string, path: string, content: Content) =>
  Effect.gen(function*() {
    const shown = content.kind === "link" ? `${verb} ${path} -> ${content.target}` : `${verb} ${path}`
    const decision = yield* decide(path, content, yield* digestOf(content))
    switch (decision.action) {
      case "add":
        return `${shown} (new)`
      case "keep":
        return `${shown} (unchanged)`
      case "replace":
        return `${shown} (replaces the ${decision.replaces} there, kept as ${basename(decision.backup)})`
    }
  })

/** Prints what an install would do, step by step, reading the target dirs but changing nothing. */
export const previewInstall = (plan: InstallPlan): Effect.Effect<void, InstallError, HostFs | Reporter> =>
  Effect.gen(function*() {
    const reporter = yield* Reporter
    const fs = yield* HostFs
    for (const dir of plan.dirs) {
      const missing = yield* missingDirs(dir.path)
      yield* reporter.line("plan", missing.length === 0 ? `dir ${dir.path} (exists)` : `mkdir ${missing.join(" ")}`)
    }
    for (const file of plan.files) yield* reporter.line("plan", yield* previewPlace("install", file.path, file.content))
    for (const link of plan.links) {
      yield* reporter.line("plan", yield* previewPlace("link", link.path, { kind: "link", target: link.target }))
    }
    for (const plugin of plan.verify) {
      yield* reporter.line("plan", `verify ${plugin.name}: CNI_COMMAND=VERSION must list ${REQUIRED_VERSION}`)
    }
    if (plan.conflist !== undefined) {
      yield* reporter.line("plan", yield* previewPlace("install", plan.conflist.path, plan.conflist.content))
    }
    const record = recordPath(plan.binDir)
    const existing = yield* fs.lstat(record)
    yield* reporter.line(
      "plan",
      `record ${record}${Option.isSome(existing) ? " (the earlier record is kept for a second --uninstall)" : ""}, unless nothing changed`
    )
    yield* reporter.line("note", "dry run: nothing was changed")
  })

/** Validates, then installs (or previews with `dryRun`). */
export const runInstall = (options: InstallOptions): Effect.Effect<void, RunFailed, HostFs | PluginExec | Reporter> =>
  Effect.gen(function*() {
    const reporter = yield* Reporter
    const plan = yield* makePlan(options).pipe(toRunFailed("install", "validate"))
    if (options.dryRun) {
      yield* previewInstall(plan).pipe(toRunFailed("install", "validate"))
      return
    }
    const handles = yield* Pipeline.apply(installPipeline, plan).pipe(toRunFailed("install", "apply"))
    const changed = handles.record !== undefined
    yield* reporter.line(
      "note",
      changed
        ? `installed ${plan.plugins.join(", ")} (${plan.mode}) into ${plan.binDir}; undo with --uninstall --bin-dir ${plan.binDir}`
        : `${plan.plugins.join(", ")} already installed in ${plan.binDir}; nothing changed`
    )
  })
