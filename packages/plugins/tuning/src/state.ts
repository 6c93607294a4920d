/**
 * The per-attachment state file: what ADD is about to change and the values it replaces,
 * so DEL (a new process, without ADD's memory) can put them back. One JSON file per
 * attachment, `<dataDir>/<network>/<attachment key>.json` (12 hex digits of sha256(containerID/ifname)), written atomically.
 */
import { mkdirSync } from "node:fs"
import { join } from "node:path"
import { Cause, Effect, Exit, Schema } from "effect"
import { type CniError, ioFailure } from "@tscni/spec"
import { attachmentKey, listFiles, readFileIfExists, removeFileIfExists, replaceFile, SetLinkOptionsHandle, SetSysctlHandle } from "@tscni/steps"

/**
 * The handles DEL undoes, encoded with the steps' own handle schemas: the value each
 * sysctl and each link property had before ADD.
 */
export const TuningHandles = Schema.Struct({
  sysctls: Schema.Array(SetSysctlHandle),
  link: Schema.Array(SetLinkOptionsHandle)
})
export type TuningHandles = typeof TuningHandles.Type

/** One state file: whose it is (GC reads this) and the handles, as Pipeline.encodeHandles wrote them. */
export const StateRecord = Schema.Struct({
  containerId: Schema.String,
  ifname: Schema.String,
  netns: Schema.String,
  handles: Schema.Record(Schema.String, Schema.Unknown)
})
export type StateRecord = typeof StateRecord.Type

const describe = (error: unknown): string => (error instanceof Error ? error.message : String(error))

const fsCall = <A>(what: string, path: string, run: () => A): Effect.Effect<A, CniError> =>
  Effect.try({ try: run, catch: (error) => ioFailure(`tuning: cannot ${what} ${path}`, describe(error)) })

/** The network's directory under the data directory. */
export const networkDir = (dataDir: string, network: string): string => join(dataDir, network)

/**
 * The attachment's state file, named by the attachment key: `<containerID>-<ifname>` would
 * let container `a-b` with `c` and container `a` with `b-c` share one file.
 */
export const statePath = (dataDir: string, network: string, containerId: string, ifname: string): string =>
  join(networkDir(dataDir, network), `${attachmentKey(containerId, ifname)}.json`)

let tempCounter = 0

/** Writes the file whole or not at all: a temp file in the same directory, then rename. */
export const writeState = (path: string, record: StateRecord): Effect.Effect<void, CniError> =>
  fsCall("write", path, () => {
    mkdirSync(join(path, ".."), { recursive: true, mode: 0o700 })
    replaceFile(path, `${path}.${process.pid}.${tempCounter++}.tmp`, JSON.stringify(Schema.encodeSync(StateRecord)(record)) + "\n")
  })

/** Removes a file; one already gone is fine. */
export const removeState = (path: string): Effect.Effect<void, CniError> =>
  fsCall("remove", path, () => removeFileIfExists(path))

/** What a state file holds: absent, unreadable as a record (`corrupt`, and why), or the record. */
export type StateRead =
  | { readonly _tag: "absent" }
  | { readonly _tag: "corrupt"; readonly why: string }
  | { readonly _tag: "found"; readonly record: StateRecord }

/** Reads a state file; a file that does not parse or decode is `corrupt`, never an error. */
export const readState = (path: string): Effect.Effect<StateRead, CniError> =>
  fsCall("read", path, () => readFileIfExists(path)).pipe(
    Effect.map((text): StateRead => {
      if (text === undefined) return { _tag: "absent" }
      let json: unknown
      try {
        json = JSON.parse(text)
      } catch (error) {
        return { _tag: "corrupt", why: `not JSON: ${describe(error)}` }
      }
      const decoded = Schema.decodeUnknownExit(StateRecord)(json)
      return Exit.isSuccess(decoded) ? { _tag: "found", record: decoded.value } : { _tag: "corrupt", why: `not a state record: ${Cause.pretty(decoded.cause).split("\n")[0]}` }
    })
  )

/** The files in the network's directory (none when it does not exist). */
export const listStateFiles = (dir: string): Effect.Effect<ReadonlyArray<string>, CniError> =>
  fsCall("list", dir, () => listFiles(dir))
