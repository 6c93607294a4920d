/**
 * Putting one file or symlink in place atomically, keeping what it replaces, and taking
 * it back. The building block of every install step and of the uninstall record.
 */
import { createHash, randomBytes } from "node:crypto"
import { basename, dirname, join } from "node:path"
import { Effect, Option, Schema } from "effect"
import { ensure, makeStep } from "@tscni/engine"
import { InstallError } from "./errors.ts"
import { HostFs, type PathInfo } from "./HostFs.ts"

/** What one place step did: enough to take it back and for the uninstall record. */
export const Placed = Schema.Struct({
  path: Schema.String,
  kind: Schema.Literals(["file", "symlink"]),
  /** where the entry this one replaced is kept (same dir), or null when there was none */
  backup: Schema.NullOr(Schema.String),
  /** sha256 of the installed file's bytes, or the installed symlink's target */
  digest: Schema.String,
  /** false when the path already held exactly this: nothing was touched */
  changed: Schema.Boolean
})
export type Placed = typeof Placed.Type

/** What to put at a path: a copy of a file, some text, or a symlink. */
export type Content =
  | { readonly kind: "copy"; readonly from: string; readonly mode: number }
  | { readonly kind: "text"; readonly text: string; readonly mode: number }
  | { readonly kind: "link"; readonly target: string }

/** The suffix of the name a replaced entry is kept under: `.bridge.tscni-prev`. */
export const BACKUP_SUFFIX = ".tscni-prev"

/** What placing content at a path would do, decided from what is there now. */
export type Decision =
  | { readonly action: "add" }
  | { readonly action: "keep" }
  | { readonly action: "replace"; readonly backup: string; readonly replaces: PathInfo["type"] }

const MAX_SUFFIX = 1000

/** The first of `dir/base`, `dir/base-2`, `dir/base-3`, … that does not exist. */
export const freeName = (dir: string, base: string): Effect.Effect<string, InstallError, HostFs> =>
  Effect.gen(function*() {
    const fs = yield* HostFs
    for (let n = 1; n <= MAX_SUFFIX; n++) {
      const candidate = join(dir, n === 1 ? base : `${base}-${n}`)
      if (Option.isNone(yield* fs.lstat(candidate))) return candidate
    }
    return yield* new InstallError({
      operation: "backup",
      path: join(dir, base),
      reason: "AlreadyExists",
      message: `more than ${MAX_SUFFIX} backups of this name; remove old ones`
    })
  })

/** The backup name for `path`: `.NAME.tscni-prev` in the same dir (or the next free one). */
export const backupNameFor = (path: string): Effect.Effect<string, InstallError, HostFs> =>
  freeName(dirname(path), `.${basename(path)}${BACKUP_SUFFIX}`)

const tempNameFor = (path: string): string =>
  join(dirname(path), `.${basename(path)}.tscni-tmp-${process.pid}-${randomBytes(4).toString("hex")}`)

const sha256Text = (text: string): string => createHash("sha256").update(text).digest("hex")

/** The digest the path will have: the file's sha256, or the link target. */
export const digestOf = (content: Content): Effect.Effect<string, InstallError, HostFs> =>
  Effect.gen(function*() {
    const fs = yield* HostFs
    switch (content.kind) {
      case "copy":
        return yield* fs.sha256(content.from)
      case "text":
        return sha256Text(content.text)
      case "link":
        return content.target
    }
  })

/** Whether `path` (described by `info`) already is exactly `content`. */
const holds = (path: string, info: PathInfo, content: Content, digest: string): Effect.Effect<boolean, InstallError, HostFs> =>
  Effect.gen(function*() {
    const fs = yield* HostFs
    if (content.kind === "link") return info.type === "symlink" && (yield* fs.readLink(path)) === digest
    return info.type === "file" && info.mode === content.mode && (yield* fs.sha256(path)) === digest
  })

/** Decides, without changing anything, what placing `content` at `path` would do. */
export const decide = (path: string, content: Content, digest: string): Effect.Effect<Decision, InstallError, HostFs> =>
  Effect.gen(function*() {
    const fs = yield* HostFs
    const current = yield* fs.lstat(path)
    if (Option.isNone(current)) return { action: "add" } as const
    if (current.value.type === "directory") {
      return yield* new InstallError({ operation: "install", path, reason: "Invalid", message: "is a directory" })
    }
    if (yield* holds(path, current.value, content, digest)) return { action: "keep" } as const
    return { action: "replace", backup: yield* backupNameFor(path), replaces: current.value.type } as const
  })

const writeTemp = (tmp: string, content: Content): Effect.Effect<void, InstallError, HostFs> =>
  Effect.gen(function*() {
    const fs = yield* HostFs
    switch (content.kind) {
      case "copy":
        return yield* fs.copyNew(content.from, tmp, content.mode)
      case "text":
        return yield* fs.writeNew(tmp, content.text, content.mode)
      case "link":
        return yield* fs.symlink(content.target, tmp)
    }
  })

const ignoreNotFound = <R>(effect: Effect.Effect<void, InstallError, R>): Effect.Effect<void, InstallError, R> =>
  effect.pipe(Effect.catchIf((error) => error.reason === "NotFound", () => Effect.void))

/** Takes a placed entry back: the kept entry returns under its name, or the added one goes. */
export const restore = (placed: Placed): Effect.Effect<void, InstallError, HostFs> =>
  Effect.gen(function*() {
    if (!placed.changed) return
    const fs = yield* HostFs
    // rename puts the original back in one step, over what was installed
    if (placed.backup !== null) yield* ignoreNotFound(fs.rename(placed.backup, placed.path))
    else yield* ignoreNotFound(fs.unlink(placed.path))
    yield* fs.syncDir(dirname(placed.path))
  })

/**
 * Puts `content` at `path` so that the path always names either the old entry or the
 * complete new one: the new one is written (and fsynced and chmodded) under a temp name
 * in the same dir and renamed over the path. The old entry is first hard-linked to its
 * backup name, so it is kept byte for byte (mode, owner, inode) and the path never goes
 * missing. A path that already holds exactly `content` is left alone (`changed: false`).
 * If anything fails, what this call did is undone before it fails.
 *
 * `backup` forces the backup name (the record names its own backup before it is written).
 */
export const placeAtomically = (
  path: string,
  content: Content,
  options: { readonly backup?: string; readonly alwaysReplace?: boolean } = {}
): Effect.Effect<Placed, InstallError, HostFs> =>
  Effect.gen(function*() {
    const fs = yield* HostFs
    const kind = content.kind === "link" ? "symlink" as const : "file" as const
    const digest = yield* digestOf(content)
    const decision = yield* decide(path, content, digest)
    if (decision.action === "keep" && options.alwaysReplace !== true) {
      return { path, kind, backup: null, digest, changed: false }
    }
    const backup = decision.action === "add"
      ? null
      : options.backup ?? (decision.action === "replace" ? decision.backup : yield* backupNameFor(path))
    if (backup !== null) yield* fs.link(path, backup)
    const tmp = tempNameFor(path)
    const cleanUp = fs.unlink(tmp).pipe(
      Effect.ignore,
      Effect.andThen(backup === null ? Effect.void : Effect.ignore(fs.unlink(backup)))
    )
    yield* writeTemp(tmp, content).pipe(Effect.onError(() => cleanUp))
    yield* fs.rename(tmp, path).pipe(Effect.onError(() => cleanUp))
    const placed: Placed = { path, kind, backup, digest, changed: true }
    yield* fs.syncDir(dirname(path)).pipe(Effect.onError(() => Effect.ignore(restore(placed))))
    return placed
  })

/** The postcondition of a placed entry: the path still holds what was placed. */
export const checkPlaced = (step: string) => (placed: Placed) =>
  Effect.gen(function*() {
    const fs = yield* HostFs
    const info = yield* fs.lstat(placed.path)
    yield* ensure(step, Option.isSome(info), () => `${placed.path} is missing`)
    const actual = placed.kind === "symlink" ? yield* fs.readLink(placed.path) : yield* fs.sha256(placed.path)
    yield* ensure(step, actual === placed.digest, () => `${placed.path} has changed since it was installed`)
  })

/** Input of installFile: a copy of a file or some text, at `path`, with `mode`. */
export interface FileInput {
  readonly path: string
  readonly content: Extract<Content, { kind: "copy" | "text" }>
}

/** Installs one regular file atomically (a plugin binary, a conflist). */
export const installFile = makeStep({
  name: "installFile",
  handle: Placed,
  apply: (input: FileInput) => placeAtomically(input.path, input.content),
  undo: restore,
  check: checkPlaced("installFile")
})

/** Input of installLink: a symlink at `path` pointing at `target` (relative: `tscni`). */
export interface LinkInput {
  readonly path: string
  readonly target: string
}

/** Installs one symlink atomically (a plugin name pointing at the multicall binary). */
export const installLink = makeStep({
  name: "installLink",
  handle: Placed,
  apply: (input: LinkInput) => placeAtomically(input.path, { kind: "link", target: input.target }),
  undo: restore,
  check: checkPlaced("installLink")
})

/** What ensureDir made: the dirs it created, outermost first (none if it existed). */
export const MadeDir = Schema.Struct({ path: Schema.String, created: Schema.Array(Schema.String) })
export type MadeDir = typeof MadeDir.Type

/** Removes dirs this installer created, innermost first; one that is no longer empty stays. */
const removeCreated = (created: ReadonlyArray<string>): Effect.Effect<void, InstallError, HostFs> =>
  Effect.gen(function*() {
    const fs = yield* HostFs
    for (const dir of [...created].reverse()) {
      yield* fs.rmdir(dir).pipe(
        Effect.catchIf((error) => error.reason === "NotFound" || error.reason === "NotEmpty", () => Effect.void)
      )
    }
  })

/** Missing dirs from the outermost missing ancestor down to `path`. */
export const missingDirs = (path: string): Effect.Effect<ReadonlyArray<string>, InstallError, HostFs> =>
  Effect.gen(function*() {
    const fs = yield* HostFs
    const missing: Array<string> = []
    let at = path
    for (;;) {
      const info = yield* fs.lstat(at)
      if (Option.isSome(info)) {
        if (info.value.type !== "directory" && info.value.type !== "symlink") {
          return yield* new InstallError({ operation: "mkdir", path: at, reason: "Invalid", message: "exists and is not a directory" })
        }
        return missing
      }
      missing.unshift(at)
      const parent = dirname(at)
      if (parent === at) return missing
      at = parent
    }
  })

/** Makes a target dir (and its missing parents) when it is not there; undo removes only those. */
export const ensureDir = makeStep({
  name: "ensureDir",
  handle: MadeDir,
  apply: (input: { readonly path: string }) =>
    Effect.gen(function*() {
      const fs = yield* HostFs
      const missing = yield* missingDirs(input.path)
      const created: Array<string> = []
      for (const dir of missing) {
        yield* fs.mkdir(dir, 0o755).pipe(Effect.onError(() => Effect.ignore(removeCreated(created))))
        created.push(dir)
      }
      const [outermost] = created
      if (outermost !== undefined) {
        yield* fs.syncDir(dirname(outermost)).pipe(Effect.onError(() => Effect.ignore(removeCreated(created))))
      }
      return { path: input.path, created }
    }),
  undo: (made) => removeCreated(made.created),
  check: (made) =>
    Effect.gen(function*() {
      const info = yield* (yield* HostFs).lstat(made.path)
      yield* ensure("ensureDir", Option.isSome(info), () => `${made.path} is missing`)
    })
})
