/**
 * The install record: what the last install added and replaced, written last by the
 * install (so it exists only for a complete install) and read by `--uninstall`.
 */
import { join } from "node:path"
import { Effect, Option, Schema } from "effect"
import { makeStep } from "@tscni/engine"
import { InstallError } from "./errors.ts"
import { HostFs } from "./HostFs.ts"
import { backupNameFor, checkPlaced, Placed, placeAtomically, restore } from "./place.ts"

/** The record's file name in the bin dir. */
export const RECORD_NAME = ".tscni-install.json"

/** Where install writes the record and `--uninstall` looks for it: always in the bin dir. */
export const recordPath = (binDir: string): string => join(binDir, RECORD_NAME)

/** How binaries are installed: one multicall runtime plus links, or one binary per plugin. */
export const InstallMode = Schema.Literals(["multicall", "plugins"])
export type InstallMode = typeof InstallMode.Type

/** The record as written to disk. */
export const InstallRecord = Schema.Struct({
  tool: Schema.Literal("tscni-install"),
  format: Schema.Literal(1),
  /** ISO time of the install */
  time: Schema.String,
  mode: InstallMode,
  binDir: Schema.String,
  confDir: Schema.NullOr(Schema.String),
  plugins: Schema.Array(Schema.String),
  /** dirs the install created, outermost first */
  createdDirs: Schema.Array(Schema.String),
  /** entries the install added or replaced, in install order (unchanged ones are not listed) */
  entries: Schema.Array(Placed),
  /** the record file itself, and where the record it replaced is kept */
  record: Schema.Struct({ path: Schema.String, backup: Schema.NullOr(Schema.String) })
})
export type InstallRecord = typeof InstallRecord.Type

/** Everything in a record but its own location, which writeRecord fills in. */
export type RecordBody = Omit<InstallRecord, "record">

/** Reads and decodes the record in `binDir`; a missing or unreadable record is an error. */
export const readRecord = (binDir: string): Effect.Effect<InstallRecord, InstallError, HostFs> =>
  Effect.gen(function*() {
    const fs = yield* HostFs
    const path = recordPath(binDir)
    if (Option.isNone(yield* fs.lstat(path))) {
      return yield* new InstallError({
        operation: "uninstall",
        path,
        reason: "NotFound",
        message: "no install record: nothing was installed here by tscni-install (or it was already uninstalled)"
      })
    }
    const text = yield* fs.readText(path)
    const json = yield* Effect.try({
      try: (): unknown => JSON.parse(text),
      catch: () => new InstallError({ operation: "uninstall", path, reason: "Invalid", message: "the install record is not JSON" })
    })
    return yield* Schema.decodeUnknownEffect(InstallRecord)(json).pipe(
      Effect.mapError((error) =>
        new InstallError({ operation: "uninstall", path, reason: "Invalid", message: `not an install record: ${error.message}` })
      )
    )
  })

/**
 * Writes the record atomically like any other file. A record that was there (an earlier
 * install's) is kept as a backup and named inside the new record, so uninstalling this
 * install brings the earlier record back and a second `--uninstall` undoes that one.
 */
export const writeRecord = makeStep({
  name: "writeRecord",
  handle: Placed,
  apply: (input: { readonly binDir: string; readonly body: RecordBody }) =>
    Effect.gen(function*() {
      const fs = yield* HostFs
      const path = recordPath(input.binDir)
      const backup = Option.isSome(yield* fs.lstat(path)) ? yield* backupNameFor(path) : null
      const record: InstallRecord = { ...input.body, record: { path, backup } }
      const text = JSON.stringify(record, null, 2) + "\n"
      return yield* placeAtomically(
        path,
        { kind: "text", text, mode: 0o644 },
        backup === null ? { alwaysReplace: true } : { backup, alwaysReplace: true }
      )
    }),
  undo: restore,
  check: checkPlaced("writeRecord")
})
