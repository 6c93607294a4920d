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

/**
 * Where replace()'s temp files are written (in the network's dir, so the rename stays on
 * one filesystem): the sweep under every lock reads this directory, normally empty, and
 * not the network's, which holds a file per address and per pod (a readdir that grew with
 * the node's pods). Temp files an older build left in the network's dir are never read.
 */
export const TEMP_DIR = ".tscni-tmp"

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
    // under the lock, which made the temp dir
    replace: (name, content) =>
      fsCall("write", pathOf(name), () => replaceFile(pathOf(name), join(dir, TEMP_DIR, `.${name}.${process.pid}.${tempCounter++}.tmp`), content)),
    remove: (name) => fsCall("remove", pathOf(name), () => removeFileIfExists(pathOf(name))),
    locked: (effect) =>
      fsCall("mkdir", dir, () => {
        mkdirSync(dir, { recursive: true, mode: 0o755 })
        mkdirSync(join(dir, TEMP_DIR), { recursive: true, mode: 0o700 })
      }).pipe(
        Effect.andThen(
          withFileLock(pathOf("lock"), fsCall("sweep", dir, () => sweepStaleTempFiles(join(dir, TEMP_DIR))).pipe(Effect.andThen(effect)), (failure) =>
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

/** This boot's id, read once per process (a resident agent's too: a reboot ends it). */
let bootId: { readonly value: string | undefined } | undefined
const currentBootId = fsCall("read", BOOT_ID_PATH, () => {
  if (bootId !== undefined) return bootId.value
  try {
    bootId = { value: readFileSync(BOOT_ID_PATH, "utf8").trim() || undefined }
  } catch (error) {
    if (errnoCode(error) !== "ENOENT") throw error
    bootId = { value: undefined }
  }
  return bootId.value
})

/** host-local's store on the real filesystem. */
export const diskStoreLayer = IpamStore.make({
  network: (dataDir, network) => makeNetworkStore(diskFiles(dataDir, network)),
  currentBootId
})
