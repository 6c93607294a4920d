/**
 * The store on disk: synchronous node:fs calls (each wrapped in Effect.try), an flock on
 * `<dir>/lock` around every read-modify-write, O_EXCL creation for reservations and
 * temp file + rename for files that are rewritten.
 */
import { accessSync, constants, existsSync, mkdirSync, readFileSync, statSync } from "node:fs"
import { dirname, join } from "node:path"
import { Effect } from "effect"
import { errnoCode, listFiles, readFileIfExists, removeFileIfExists, replaceFile, withFileLock, writeNewFile } from "@tscni/steps"
import { IpamStore, makeNetworkStore, StoreError, type StoreFiles } from "./store.ts"

const BOOT_ID_PATH = "/proc/sys/kernel/random/boot_id"

const message = (error: unknown): string => (error instanceof Error ? error.message : String(error))

const fsCall = <A>(operation: string, path: string, run: () => A): Effect.Effect<A, StoreError> =>
  Effect.try({ try: run, catch: (error) => new StoreError({ operation, path, message: message(error) }) })

let tempCounter = 0

/** `.<name>.<pid>.<n>.tmp`: replace()'s temp files, named after the process writing them. */
const TEMP_FILE = /^\..+\.(\d+)\.\d+\.tmp$/

const processAlive = (pid: number): boolean => {
  try {
    process.kill(pid, 0)
    return true
  } catch (error) {
    // EPERM: it exists, someone else's
    return errnoCode(error) === "EPERM"
  }
}

/**
 * Removes the temp files of writers that are gone (killed between write and rename): they
 * are never read, but would pile up. Runs under the store lock, so no live writer of this
 * store is between its write and its rename — except this process, whose files stay.
 */
const sweepStaleTempFiles = (dir: string): void => {
  for (const name of listFiles(dir)) {
    const pid = Number(TEMP_FILE.exec(name)?.[1] ?? Number.NaN)
    if (Number.isInteger(pid) && pid !== process.pid && !processAlive(pid)) removeFileIfExists(join(dir, name))
  }
}

/** The file primitives for `<dataDir>/<network>` on the real filesystem. */
export const diskFiles = (dataDir: string, network: string): StoreFiles => {
  const dir = join(dataDir, network)
  const pathOf = (name: string) => join(dir, name)
  return {
    dir,
    exists: fsCall("stat", dir, () => existsSync(dir)),
    names: fsCall("readdir", dir, () => listFiles(dir)),
    read: (name) => fsCall("read", pathOf(name), () => readFileIfExists(pathOf(name))),
    createExclusive: (name, content) =>
      fsCall("create", pathOf(name), () => {
        try {
          writeNewFile(pathOf(name), content, constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL)
          return true
        } catch (error) {
          if (errnoCode(error) === "EEXIST") return false
          throw error
        }
      }),
    replace: (name, content) =>
      fsCall("write", pathOf(name), () => replaceFile(pathOf(name), pathOf(`.${name}.${process.pid}.${tempCounter++}.tmp`), content)),
    remove: (name) => fsCall("remove", pathOf(name), () => removeFileIfExists(pathOf(name))),
    locked: (effect) =>
      fsCall("mkdir", dir, () => mkdirSync(dir, { recursive: true, mode: 0o755 })).pipe(
        Effect.andThen(
          withFileLock(pathOf("lock"), fsCall("sweep", dir, () => sweepStaleTempFiles(dir)).pipe(Effect.andThen(effect)), (failure) =>
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
