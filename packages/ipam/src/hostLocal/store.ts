/**
 * host-local's allocation store, in the reference's on-disk format so either plugin can
 * read the other's state: `<dataDir>/<network>/` holds one file per allocated address, named
 * by the address and holding `<containerID>\r\n<ifname>`, a `last_reserved_ip.<set>` file
 * per range set, the `lock` file, and (tscni only) `boot_id`.
 *
 * tscni also keeps an index beside them so ADD and DEL cost the same on a node with 5 pods
 * or 500: a `.tscni-owner.<hash>` file per attachment it allocated, listing its addresses.
 * The reference never reads them as allocations (their names are not addresses, their
 * contents never equal an owner's). An entry is a hint, checked against the address files
 * it names; an attachment without one (the reference's, an older tscni's) is looked for the
 * old way, by reading every file.
 *
 * The format logic lives here once, over `StoreFiles`, a handful of file primitives with a
 * disk implementation (diskStore.ts) and an in-memory fake (memoryStore.ts), so the fake
 * cannot drift from the real format.
 */
import { Context, Effect, Layer, Schema } from "effect"
import { formatIp, type Ip, parseIp } from "@tscni/ip"
import { attachmentKey } from "@tscni/steps/attachment"

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
  /** replaces the file's content atomically (temp file + rename); only inside `locked` */
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
  /**
   * The attachment's allocations from its index entry, each checked against its address file;
   * undefined when it has no entry (the caller reads `allocations` when it must be sure).
   */
  readonly allocationsOf: (owner: Owner) => Effect.Effect<ReadonlyArray<Allocation> | undefined, StoreError>
  /** removes the index entries none of whose addresses their owner still holds (the reference released them); GC runs it */
  readonly dropStaleEntries: Effect.Effect<void, StoreError>
  /** who holds an address, from its file (one read); undefined when it is free */
  readonly isTaken: (ip: Ip) => Effect.Effect<Allocation | undefined, StoreError>
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
/** the index: one file per attachment tscni allocated */
const OWNER_FILE = ".tscni-owner."
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

/** The index file of an owner, named by the attachment's key, so any container ID and ifname make a plain name. */
const ownerFile = (owner: Owner): string => `${OWNER_FILE}${attachmentKey(owner.containerId.trim(), owner.ifname)}`

/** An index file's content: the owner's allocation content, then its addresses, one per line. */
const ownerContent = (owner: Owner, ips: ReadonlyArray<string>): string => [allocationContent(owner), ...ips].join(LINE_BREAK)

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

  const isTaken = (ip: Ip) =>
    files.read(formatIp(ip)).pipe(Effect.map((content) => (content === undefined ? undefined : parseAllocation(formatIp(ip), content))))

  /** The addresses an owner's index entry lists ([] when it has none). */
  const indexedIps = (owner: Owner) =>
    files.read(ownerFile(owner)).pipe(Effect.map((content) => (content === undefined ? [] : content.split(/\r?\n/).slice(2).map((line) => line.trim()).filter((line) => line !== ""))))

  /** Rewrites an owner's entry to `ips` (removed when none is left). */
  const writeEntry = (owner: Owner, ips: ReadonlyArray<string>) =>
    ips.length === 0 ? files.remove(ownerFile(owner)) : files.replace(ownerFile(owner), ownerContent(owner, ips))

  const allocationsOf = (owner: Owner) =>
    Effect.gen(function*() {
      const listed = yield* indexedIps(owner)
      if (listed.length === 0) return undefined
      const content = allocationContent(owner).trim()
      const out: Array<Allocation> = []
      for (const text of listed) {
        const ip = parseIp(text)
        const file = ip === undefined ? undefined : yield* files.read(formatIp(ip))
        // a stale entry (released by a plugin that keeps no index) is not the owner's any more
        if (ip !== undefined && file !== undefined && file.trim() === content) out.push({ ip, containerId: owner.containerId.trim(), ifname: owner.ifname })
      }
      return out
    })

  const lastReserved = (setIndex: number) =>
    files.read(`${LAST_RESERVED}${setIndex}`).pipe(Effect.map((text) => (text === undefined ? undefined : parseIp(text.trim()))))

  const dropStaleEntries = Effect.gen(function*() {
    for (const name of yield* files.names) {
      if (!name.startsWith(OWNER_FILE)) continue
      const [containerId = "", ifname = ""] = ((yield* files.read(name)) ?? "").split(/\r?\n/)
      const held = (yield* allocationsOf({ containerId, ifname })) ?? []
      if (held.length === 0) yield* files.remove(name)
    }
  })

  /** Removes the addresses' files, then their owners' index entries. */
  const release = (ips: ReadonlyArray<Ip>) =>
    Effect.gen(function*() {
      const owners = new Map<string, { owner: Owner; gone: Set<string> }>()
      for (const ip of ips) {
        const held = yield* isTaken(ip)
        yield* files.remove(formatIp(ip))
        if (held?.ifname === undefined) continue
        const owner = { containerId: held.containerId, ifname: held.ifname }
        const entry = owners.get(ownerFile(owner)) ?? { owner, gone: new Set<string>() }
        entry.gone.add(formatIp(ip))
        owners.set(ownerFile(owner), entry)
      }
      for (const { owner, gone } of owners.values()) {
        const listed = yield* indexedIps(owner)
        if (listed.length > 0) yield* writeEntry(owner, listed.filter((ip) => !gone.has(ip)))
      }
    })

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
      // the index last: a failure before it leaves an allocation found the old way, never a dangling entry
      const listed = yield* indexedIps(owner).pipe(Effect.onError(() => undo))
      const added = picks.map((pick) => formatIp(pick.ip)).filter((ip) => !listed.includes(ip))
      if (added.length > 0) yield* writeEntry(owner, [...listed, ...added]).pipe(Effect.onError(() => undo))
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
    allocationsOf,
    dropStaleEntries,
    isTaken,
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
