/**
 * The in-memory fake of host-local's store, for unit tests: the same store format
 * (makeNetworkStore) over a map of directories, a per-directory semaphore for the lock, a
 * settable boot id, and fault injection by operation.
 */
import { Effect, Semaphore } from "effect"
import { IpamStore, makeNetworkStore, StoreError, type StoreFiles } from "./store.ts"

/** Everything the fake holds; tests read and change it directly. */
export interface MemoryState {
  /** what `currentBootId` answers; change it to simulate a reboot */
  bootId: string | undefined
  /** directory path → file name → content */
  readonly dirs: Map<string, Map<string, string>>
  /** directories that cannot be created or written (STATUS's writability check) */
  readonly readOnly: Set<string>
  /** makes matching operations fail with a StoreError (e.g. `(op) => op === "create"`) */
  failWhen: ((operation: string, name: string) => boolean) | undefined
}

/**
 * An empty fake host: no dirs, nothing read-only, no faults; `bootId` is what
 * currentBootId answers (undefined: a host whose boot cannot be told).
 */
export const newMemoryState = (bootId: string | undefined = "boot-1"): MemoryState => ({
  bootId,
  dirs: new Map(),
  readOnly: new Set(),
  failWhen: undefined
})

const memoryFiles = (state: MemoryState, locks: Map<string, Semaphore.Semaphore>, dir: string): StoreFiles => {
  const guard = <A>(operation: string, name: string, run: () => A): Effect.Effect<A, StoreError> =>
    Effect.suspend(() => {
      if (state.failWhen?.(operation, name)) {
        return Effect.fail(new StoreError({ operation, path: `${dir}/${name}`, message: "injected fault" }))
      }
      if (operation !== "read" && operation !== "readdir" && state.readOnly.has(dir)) {
        return Effect.fail(new StoreError({ operation, path: `${dir}/${name}`, message: "read-only file system" }))
      }
      return Effect.succeed(run())
    })
  const files = () => {
    let map = state.dirs.get(dir)
    if (map === undefined) {
      map = new Map()
      state.dirs.set(dir, map)
    }
    return map
  }
  const lock = () => {
    let semaphore = locks.get(dir)
    if (semaphore === undefined) {
      semaphore = Semaphore.makeUnsafe(1)
      locks.set(dir, semaphore)
    }
    return semaphore
  }
  return {
    dir,
    exists: Effect.sync(() => state.dirs.has(dir)),
    names: guard("readdir", "", () => [...(state.dirs.get(dir)?.keys() ?? [])]),
    read: (name) => guard("read", name, () => state.dirs.get(dir)?.get(name)),
    createExclusive: (name, content) =>
      guard("create", name, () => {
        const map = files()
        if (map.has(name)) return false
        map.set(name, content)
        return true
      }),
    replace: (name, content) => guard("write", name, () => void files().set(name, content)),
    remove: (name) => guard("remove", name, () => void state.dirs.get(dir)?.delete(name)),
    locked: (effect) =>
      guard("mkdir", "", () => files()).pipe(
        Effect.andThen(lock().withPermits(1)(effect))
      ),
    writableProblem: Effect.sync(() => (state.readOnly.has(dir) ? `${dir} is not writable` : undefined))
  }
}

/**
 * A fresh fake store and its layer; `state` is shared with the test, and `observe` may wrap
 * each network's file primitives (a test counting what an operation reads).
 */
export const memoryStore = (state: MemoryState = newMemoryState(), observe: (files: StoreFiles) => StoreFiles = (files) => files) => {
  const locks = new Map<string, Semaphore.Semaphore>()
  const network = (dataDir: string, name: string) => makeNetworkStore(observe(memoryFiles(state, locks, `${dataDir}/${name}`)))
  return {
    state,
    layer: IpamStore.make({ network, currentBootId: Effect.sync(() => state.bootId) }),
    /** one network's store, the same one the layer hands out */
    network,
    /** the files of one network's directory (empty when it does not exist) */
    files: (dataDir: string, network: string): ReadonlyMap<string, string> =>
      state.dirs.get(`${dataDir}/${network}`) ?? new Map()
  }
}
