/**
 * `--uninstall`: put back what the last install replaced and remove what it added, from
 * its record. Itself a pipeline of reversible steps: if one revert fails, the ones done
 * are taken back and the install stays whole.
 */
import { basename, dirname } from "node:path"
import { Effect, Option, Schema } from "effect"
import { eachOf, ensure, makeStep, Pipeline } from "@tscni/engine"
import { InstallError } from "./errors.ts"
import { HostFs } from "./HostFs.ts"
import { toRunFailed, type RunFailed } from "./outcome.ts"
import { freeName } from "./place.ts"
import { type InstallRecord, readRecord } from "./record.ts"
import { reported } from "./report.ts"
import { Reporter } from "./Reporter.ts"

/** One entry to take back: the installed path and the backup to restore (null: just remove it). */
export interface RevertInput {
  readonly path: string
  readonly backup: string | null
}

/** What revertPlaced did: the installed entry is parked under `saved` until the uninstall is complete. */
export const Reverted = Schema.Struct({
  path: Schema.String,
  backup: Schema.NullOr(Schema.String),
  saved: Schema.String
})
export type Reverted = typeof Reverted.Type

const tolerate = (...reasons: ReadonlyArray<InstallError["reason"]>) =>
<R>(effect: Effect.Effect<void, InstallError, R>): Effect.Effect<void, InstallError, R> =>
  effect.pipe(Effect.catchIf((error) => reasons.includes(error.reason), () => Effect.void))

/** Puts the installed entry back where it was, and the original back under its backup name. */
const unrevert = (reverted: Reverted): Effect.Effect<void, InstallError, HostFs> =>
  Effect.gen(function*() {
    const fs = yield* HostFs
    if (reverted.backup !== null) yield* tolerate("AlreadyExists", "NotFound")(fs.link(reverted.path, reverted.backup))
    yield* tolerate("NotFound")(fs.rename(reverted.saved, reverted.path))
    yield* fs.syncDir(dirname(reverted.path))
  })

/**
 * Reverts one installed entry. With a backup: the installed entry is hard-linked aside and
 * the backup renamed over the path (the path never goes missing). Without: the installed
 * entry is renamed aside. The parked entries are deleted once the whole uninstall worked.
 */
export const revertPlaced = makeStep({
  name: "revertPlaced",
  handle: Reverted,
  apply: (input: RevertInput) =>
    Effect.gen(function*() {
      const fs = yield* HostFs
      const saved = yield* freeName(dirname(input.path), `.${basename(input.path)}.tscni-removed`)
      if (input.backup !== null) {
        yield* fs.link(input.path, saved)
        yield* fs.rename(input.backup, input.path).pipe(Effect.onError(() => Effect.ignore(fs.unlink(saved))))
      } else {
        yield* fs.rename(input.path, saved)
      }
      const reverted: Reverted = { path: input.path, backup: input.backup, saved }
      yield* fs.syncDir(dirname(input.path)).pipe(Effect.onError(() => Effect.ignore(unrevert(reverted))))
      return reverted
    }),
  undo: unrevert,
  check: (reverted) =>
    Effect.gen(function*() {
      const present = Option.isSome(yield* (yield* HostFs).lstat(reverted.path))
      yield* ensure("revertPlaced", present === (reverted.backup !== null), () =>
        reverted.backup === null ? `${reverted.path} is back` : `${reverted.path} is missing`)
    })
})

/** What removeDir did. */
export const RemovedDir = Schema.Struct({ path: Schema.String, removed: Schema.Boolean })

/** Removes a dir the install created, if it is empty now; one with other files in it stays. */
export const removeDir = makeStep({
  name: "removeDir",
  handle: RemovedDir,
  apply: (input: { readonly path: string }) =>
    Effect.gen(function*() {
      const fs = yield* HostFs
      const removed = yield* fs.rmdir(input.path).pipe(
        Effect.as(true),
        Effect.catchIf((error) => error.reason === "NotEmpty" || error.reason === "NotFound", () => Effect.succeed(false))
      )
      return { path: input.path, removed }
    }),
  undo: (made) =>
    Effect.gen(function*() {
      if (made.removed) yield* tolerate("AlreadyExists")((yield* HostFs).mkdir(made.path, 0o755))
    }),
  check: (made) =>
    Effect.gen(function*() {
      const present = Option.isSome(yield* (yield* HostFs).lstat(made.path))
      yield* ensure("removeDir", !made.removed || !present, () => `${made.path} is back`)
    })
})

/** The input of the uninstall pipeline, from a record. */
export interface UninstallPlan {
  /** in reverse install order */
  readonly entries: ReadonlyArray<RevertInput>
  readonly record: RevertInput
  /** innermost first */
  readonly dirs: ReadonlyArray<{ readonly path: string }>
}

const revertStep = reported(revertPlaced, {
  doing: (input) => input.backup === null ? `remove ${input.path}` : `restore ${input.path} from ${basename(input.backup)}`,
  done: (reverted) =>
    reverted.backup === null ? `remove ${reverted.path}` : `restore ${reverted.path} from ${basename(reverted.backup)}`,
  undoing: (reverted) => `put back the installed ${reverted.path}`
})

const dirStep = reported(removeDir, {
  doing: (input) => `rmdir ${input.path}`,
  done: (removed) => removed.removed ? `rmdir ${removed.path}` : `keep ${removed.path} (not empty)`,
  undoing: (removed) => removed.removed ? `mkdir ${removed.path}` : undefined
})

/** The uninstall pipeline: entries (conflist first, binaries last), then the record. */
export const uninstallPipeline = Pipeline.make<UninstallPlan>("uninstall")
  .step("entries", eachOf(revertStep), (plan) => plan.entries)
  .step("record", revertStep, (plan) => plan.record)

/**
 * After the parked entries are deleted: the dirs the install created, if they are empty.
 * (Before, the parked entries keep them from being empty.)
 */
export const removeDirsPipeline = Pipeline.make<UninstallPlan>("uninstall-dirs")
  .step("dirs", eachOf(dirStep), (plan) => plan.dirs)

/**
 * Checks, before changing anything, that every recorded entry still is what the install
 * put there and every backup is still there; an uninstall must not delete someone
 * else's newer file or lose an original.
 */
export const checkRecord = (record: InstallRecord): Effect.Effect<void, InstallError, HostFs> =>
  Effect.gen(function*() {
    const fs = yield* HostFs
    const problems: Array<string> = []
    for (const entry of record.entries) {
      const info = yield* fs.lstat(entry.path)
      if (Option.isNone(info)) {
        problems.push(`${entry.path} is gone`)
      } else {
        const actual = entry.kind === "symlink"
          ? info.value.type === "symlink" ? yield* fs.readLink(entry.path) : undefined
          : info.value.type === "file" ? yield* fs.sha256(entry.path) : undefined
        if (actual !== entry.digest) problems.push(`${entry.path} has changed since it was installed`)
      }
      if (entry.backup !== null && Option.isNone(yield* fs.lstat(entry.backup))) {
        problems.push(`the backup ${entry.backup} is gone`)
      }
    }
    if (record.record.backup !== null && Option.isNone(yield* fs.lstat(record.record.backup))) {
      problems.push(`the earlier record ${record.record.backup} is gone`)
    }
    if (problems.length > 0) {
      return yield* new InstallError({
        operation: "uninstall",
        path: record.record.path,
        reason: "Changed",
        message: `refusing to uninstall: ${problems.join("; ")}`
      })
    }
  })

/** The uninstall plan of a record. */
export const uninstallPlan = (record: InstallRecord): UninstallPlan => ({
  entries: [...record.entries].reverse().map((entry) => ({ path: entry.path, backup: entry.backup })),
  record: record.record,
  dirs: [...record.createdDirs].reverse().map((path) => ({ path }))
})

/** Reverts the last install recorded in `binDir` (or previews it with `dryRun`). */
export const runUninstall = (
  options: { readonly binDir: string; readonly dryRun: boolean }
): Effect.Effect<void, RunFailed, HostFs | Reporter> =>
  Effect.gen(function*() {
    const reporter = yield* Reporter
    const fs = yield* HostFs
    const record = yield* readRecord(options.binDir).pipe(toRunFailed("uninstall", "validate"))
    yield* checkRecord(record).pipe(toRunFailed("uninstall", "validate"))
    const plan = uninstallPlan(record)
    if (options.dryRun) {
      for (const entry of [...plan.entries, plan.record]) {
        yield* reporter.line("plan", entry.backup === null ? `remove ${entry.path}` : `restore ${entry.path} from ${basename(entry.backup)}`)
      }
      for (const dir of plan.dirs) yield* reporter.line("plan", `rmdir ${dir.path} (if empty)`)
      yield* reporter.line("note", "dry run: nothing was changed")
      return
    }
    const handles = yield* Pipeline.apply(uninstallPipeline, plan).pipe(toRunFailed("uninstall", "apply"))
    // Only now is the uninstall complete: the parked installed entries can go.
    for (const reverted of [...handles.entries, handles.record]) {
      yield* fs.unlink(reverted.saved).pipe(
        Effect.catch((error) => reporter.line("note", `could not delete ${reverted.saved}: ${error.message}`))
      )
    }
    yield* Pipeline.apply(removeDirsPipeline, plan).pipe(
      Effect.catch((error) => reporter.line("note", `the created dirs stay: ${error.message}`))
    )
    yield* reporter.line(
      "note",
      `uninstalled the install of ${record.time} from ${record.binDir}${record.record.backup === null ? "" : "; the install before it is in place again (its record too)"}`
    )
  })
