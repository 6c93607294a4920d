/**
 * The store on disk: synchronous node:fs calls (each wrapped in Effect.try), an flock on
 * `<dir>/lock` around every read-modify-write, O_EXCL creation for reservations and
 * temp file + rename for files that are rewritten.
 */
import {
  accessSync,
  closeSync,
  constants,
  existsSync,
  mkdirSync,
  openSync,
  readdirSync,
  readFileSync,
  renameSync,
  statSync,
  unlinkSync,
  writeSync
} from "node:fs"
import { dirname, join } from "node:path"
import { Effect } from "effect"
import { withFileLock } from "@tscni/steps"
import { IpamStore, makeNetworkStore, StoreError, type StoreFiles } from "./store.ts"

const BOOT_ID_PATH = "/proc/sys/kernel/random/boot_id"

const errnoCode = (error: unknown): string | undefined =>
  typeof error === "object" && error !== null && "code" in error && typeof error.code === "string"
    ? error.code
    : undefined

const message = (error: unknown): string => (error instanceof Error ? error.message : String(error))

const fsCall = <A>(operation: string, path: string, run: () => A): Effect.Effect<A, StoreError> =>
  Effect.try({ try: run, catch: (error) => new StoreError({ operation, path, message: message(error) }) })

let tempCounter = 0

/** Writes `content` to a new file `path` (flags decide exclusive or not), removing it if the write fails. */
const writeNew = (path: string, content: string, flags: number): void => {
  const fd = openSync(path, flags, 0o600)
  try {
    writeSync(fd, content)
  } catch (error) {
    closeSync(fd)
    unlinkSync(path)
    throw error
  }
  closeSync(fd)
}

/** The file primitives for `<dataDir>/<network>` on the real filesystem. */
export const diskFiles = (dataDir: string, network: string): StoreFiles => {
  const dir = join(dataDir, network)
  const pathOf = (name: string) => join(dir, name)
  return {
    dir,
    exists: fsCall("stat", dir, () => existsSync(dir)),
    names: fsCall("readdir", dir, () => {
      try {
        return readdirSync(dir, { withFileTypes: true }).filter((entry) => entry.isFile()).map((entry) => entry.name)
      } catch (error) {
        if (errnoCode(error) === "ENOENT") return []
        throw error
      }
    }),
    read: (name) =>
      fsCall("read", pathOf(name), () => {
        try {
          return readFileSync(pathOf(name), "utf8")
        } catch (error) {
          if (errnoCode(error) === "ENOENT") return undefined
          throw error
        }
      }),
    createExclusive: (name, content) =>
      fsCall("create", pathOf(name), () => {
        try {
          writeNew(pathOf(name), content, constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL)
          return true
        } catch (error) {
          if (errnoCode(error) === "EEXIST") return false
          throw error
        }
      }),
    replace: (name, content) =>
      fsCall("write", pathOf(name), () => {
        const temp = pathOf(`.${name}.${process.pid}.${tempCounter++}.tmp`)
        writeNew(temp, content, constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL)
        try {
          renameSync(temp, pathOf(name))
        } catch (error) {
          unlinkSync(temp)
          throw error
        }
      }),
    remove: (name) =>
      fsCall("remove", pathOf(name), () => {
        try {
          unlinkSync(pathOf(name))
        } catch (error) {
          if (errnoCode(error) !== "ENOENT") throw error
        }
      }),
    locked: (effect) =>
      fsCall("mkdir", dir, () => mkdirSync(dir, { recursive: true, mode: 0o755 })).pipe(
        Effect.andThen(
          withFileLock(pathOf("lock"), effect, (failure) =>
            new StoreError({ operation: "lock", path: failure.path, message: failure.message, busy: failure.busy }))
        )
      ),
    writableProblem: Effect.sync(() => {
      // the nearest existing ancestor decides: we can write there, or create our way down
      let path = dir
      for (;;) {
        try {
          if (!statSync(path).isDirectory()) return `${path} is not a directory`
          accessSync(path, constants.W_OK)
          return undefined
        } catch (error) {
          if (errnoCode(error) !== "ENOENT") return `${path} is not writable: ${message(error)}`
        }
        const parent = dirname(path)
        if (parent === path) return `no existing ancestor of ${dir}`
        path = parent
      }
    })
  }
}

const currentBootId = fsCall("read", BOOT_ID_PATH, () => {
  try {
    return readFileSync(BOOT_ID_PATH, "utf8").trim() || undefined
  } catch (error) {
    if (errnoCode(error) === "ENOENT") return undefined
    throw error
  }
})

/** host-local's store on the real filesystem. */
export const diskStoreLayer = IpamStore.make({
  network: (dataDir, network) => makeNetworkStore(diskFiles(dataDir, network)),
  currentBootId
})
