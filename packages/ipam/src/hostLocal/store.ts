/**
 * host-local's allocation store, in the reference's on-disk format so either plugin can
 * read the other's state: `<dataDir>/<network>/` holds one file per allocated address, named
 * by the address and holding `<containerID>\r\n<ifname>`, a `last_reserved_ip.<set>` file
 * per range set, the `lock` file, and (tscni only) `boot_id`.
 *
 * The format logic lives here once, over `StoreFiles`, a handful of file primitives with a
 * disk implementation (diskStore.ts) and an in-memory fake (memoryStore.ts), so the fake
 * cannot drift from the real format.
 */
import { Context, Effect, Layer, Schema } from "effect"
import { formatIp, type Ip, parseIp } from "@tscni/ip"

/** A store operation failed; `busy` when the lock could not be had in time. */
export class StoreError extends Schema.TaggedError<StoreError>()("IpamStoreError", {
  operation: Schema.String,
  path: Schema.String,
  message: Schema.String,
  busy: Schema.optionalKey(Schema.Boolean)
}) {}

/** The attachment an allocation belongs to (CNI_CONTAINERID + CNI_IFNAME). */
export interface Owner {
  readonly containerId: string
  readonly ifname: string
}

/** One allocated address and its owner, as read from its file. */
export interface Allocation {
  readonly ip: Ip
  readonly containerId: string
  /** undefined for files written by old host-local versions, which held only the container ID */
  readonly ifname: string | undefined
}

/** The file primitives one network's store needs; names are plain file names in `dir`. */
export interface StoreFiles {
  readonly dir: string
  readonly exists: Effect.Effect<boolean, StoreError>
  /** names of the regular files in the directory ([] when it does not exist) */
  readonly names: Effect.Effect<ReadonlyArray<string>, StoreError>
  /** the file's content, or undefined when it is missing */
  readonly read: (name: string) => Effect.Effect<string | undefined, StoreError>
  /** creates the file only if it does not exist (O_EXCL); false when it already did */
  readonly createExclusive: (name: string, content: string) => Effect.Effect<boolean, StoreError>
  /** replaces the file's content atomically (temp file + rename) */
  readonly replace: (name: string, content: string) => Effect.Effect<void, StoreError>
  /** removes the file; a missing file is fine */
  readonly remove: (name: string) => Effect.Effect<void, StoreError>
  /** runs `effect` holding the store's exclusive lock, creating the directory first */
  readonly locked: <A, E, R>(effect: Effect.Effect<A, E, R>) => Effect.Effect<A, E | StoreError, R>
  /** undefined when the directory is writable or can be created; else why not */
  readonly writableProblem: Effect.Effect<string | undefined>
}

/** One network's allocations. All methods except `exists`/`writable` expect the lock held. */
export interface NetworkStore {
  readonly dir: string
  readonly exists: Effect.Effect<boolean, StoreError>
  readonly locked: <A, E, R>(effect: Effect.Effect<A, E, R>) => Effect.Effect<A, E | StoreError, R>
  readonly allocations: Effect.Effect<ReadonlyArray<Allocation>, StoreError>
  readonly lastReserved: (setIndex: number) => Effect.Effect<Ip | undefined, StoreError>
  /**
   * Reserves every pick for `owner`, all or nothing: returns the first address whose file
   * already exists (after removing what this call created), or undefined on success. Then
   * records each pick as its set's last reserved address.
   */
  readonly reserve: (
    owner: Owner,
    picks: ReadonlyArray<{ readonly ip: Ip; readonly setIndex: number }>
  ) => Effect.Effect<Ip | undefined, StoreError>
  readonly release: (ips: ReadonlyArray<Ip>) => Effect.Effect<void, StoreError>
  /** removes every `last_reserved_ip.*` file (round robin restarts from each set's start) */
  readonly forgetLastReserved: Effect.Effect<void, StoreError>
  readonly bootId: Effect.Effect<string | undefined, StoreError>
  readonly setBootId: (bootId: string) => Effect.Effect<void, StoreError>
  readonly writableProblem: Effect.Effect<string | undefined>
}

const LAST_RESERVED = "last_reserved_ip."
const BOOT_ID = "boot_id"
/** The reference writes this separator (disk.LineBreak) and compares whole, trimmed contents. */
const LINE_BREAK = "\r\n"

/** The file content for an owner, byte for byte what the reference writes. */
const allocationContent = (owner: Owner): string => `${owner.containerId.trim()}${LINE_BREAK}${owner.ifname}`

/** Parses an allocation file; undefined when the name is not an address in canonical form. */
const parseAllocation = (name: string, content: string): Allocation | undefined => {
  const ip = parseIp(name)
  if (ip === undefined || formatIp(ip) !== name) return undefined
  const [containerId = "", ifname] = content.trim().split(/\r?\n/)
  return { ip, containerId: containerId.trim(), ifname: ifname?.trim() }
}

/**
 * The allocations of one attachment, matched as the reference matches them: files naming
 * both container ID and ifname; only when there are none, the old files naming just the ID.
 */
export const ownedBy = (allocations: ReadonlyArray<Allocation>, owner: Owner): ReadonlyArray<Allocation> => {
  const id = owner.containerId.trim()
  const exact = allocations.filter((a) => a.containerId === id && a.ifname === owner.ifname)
  return exact.length > 0 ? exact : allocations.filter((a) => a.containerId === id && a.ifname === undefined)
}

/** The store format over some file primitives. */
export const makeNetworkStore = (files: StoreFiles): NetworkStore => {
  const allocations = Effect.gen(function*() {
    const out: Array<Allocation> = []
    for (const name of yield* files.names) {
      if (parseIp(name) === undefined) continue
      const content = yield* files.read(name)
      const allocation = content === undefined ? undefined : parseAllocation(name, content)
      if (allocation !== undefined) out.push(allocation)
    }
    return out
  })

  const lastReserved = (setIndex: number) =>
    files.read(`${LAST_RESERVED}${setIndex}`).pipe(Effect.map((text) => (text === undefined ? undefined : parseIp(text.trim()))))

  const release = (ips: ReadonlyArray<Ip>) => Effect.forEach(ips, (ip) => files.remove(formatIp(ip)), { discard: true })

  const reserve = (owner: Owner, picks: ReadonlyArray<{ readonly ip: Ip; readonly setIndex: number }>) =>
    Effect.gen(function*() {
      const created: Array<Ip> = []
      const undo = Effect.suspend(() => release(created)).pipe(Effect.ignore)
      const content = allocationContent(owner)
      for (const pick of picks) {
        const fresh = yield* files.createExclusive(formatIp(pick.ip), content).pipe(Effect.onError(() => undo))
        if (!fresh) {
          yield* undo
          return pick.ip
        }
        created.push(pick.ip)
      }
      yield* Effect.forEach(picks, (pick) => files.replace(`${LAST_RESERVED}${pick.setIndex}`, formatIp(pick.ip)), {
        discard: true
      }).pipe(Effect.onError(() => undo))
      return undefined
    }).pipe(Effect.uninterruptible)

  const forgetLastReserved = Effect.gen(function*() {
    for (const name of yield* files.names) if (name.startsWith(LAST_RESERVED)) yield* files.remove(name)
  })

  return {
    dir: files.dir,
    exists: files.exists,
    locked: files.locked,
    allocations,
    lastReserved,
    reserve,
    release,
    forgetLastReserved,
    bootId: files.read(BOOT_ID).pipe(Effect.map((text) => (text === undefined ? undefined : text.trim()))),
    setBootId: (bootId) => files.replace(BOOT_ID, `${bootId}\n`),
    writableProblem: files.writableProblem
  }
}

/** What host-local needs from its environment: a store per network and the current boot. */
export interface IpamStoreShape {
  readonly network: (dataDir: string, network: string) => NetworkStore
  /** this boot's identity (Linux: /proc/sys/kernel/random/boot_id); undefined when unknown */
  readonly currentBootId: Effect.Effect<string | undefined, StoreError>
}

/** host-local's store, a service so the plugin runs on disk or on the in-memory fake. */
export class IpamStore extends Context.Service<IpamStore, IpamStoreShape>()("tscni/IpamStore") {
  /** The build-time wiring point; see diskStore.ts and memoryStore.ts for the layers. */
  static readonly make = (shape: IpamStoreShape): Layer.Layer<IpamStore> => Layer.succeed(IpamStore)(shape)
}
