/**
 * The runtime operations on a network, libcni's AddNetworkList & co.: a loaded list plus
 * the negotiated version, the chains, and the result cache around them (written only
 * after a whole ADD succeeded, read by CHECK and DEL, removed after DEL; a corrupt entry
 * is dropped and DEL goes on without it).
 */
import { Effect } from "effect"
import { type CniError, compareVersions, ErrorCode, CniError as CniErrorClass, unknownContainer } from "@tscni/spec"
import type { PluginExec } from "@tscni/steps"
import { type CacheEntry, CACHE_KIND, type CacheKey, encodeConfig, listCache, readCache, removeCache, writeCache } from "./cache.ts"
import { addChain, type Attachment, type ChainSpec, checkChain, delChain, gcChain, statusChain, toListVersion, type ValidAttachment } from "./chain.ts"
import { loadNetwork, type LoadedList } from "./conflist.ts"
import { Failures, type PluginFailed } from "./errors.ts"
import { pluginVersions, Progress } from "./invoke.ts"
import { negotiateListVersion } from "./version.ts"

/** Where things are. */
export interface RuntimeDirs {
  readonly confDir: string
  /** CNI_PATH: colon-separated bin dirs */
  readonly cniPath: string
  readonly cacheDir: string
}

/** A network ready to run. */
export interface Network {
  readonly loaded: LoadedList
  readonly spec: ChainSpec
  readonly cacheDir: string
}

type Requirements = PluginExec | Progress

/** Loads a network and negotiates its version (asking the plugins when it lists `cniVersions`). */
export const openNetwork = (dirs: RuntimeDirs, name: string): Effect.Effect<Network, CniError, Requirements> =>
  Effect.gen(function*() {
    const loaded = yield* loadNetwork(dirs.confDir, name)
    const cniVersion = yield* negotiateListVersion(loaded.list, (type) => pluginVersions(type, dirs.cniPath, loaded.list.cniVersion))
    return {
      loaded,
      cacheDir: dirs.cacheDir,
      spec: { name: loaded.list.name, cniVersion, plugins: loaded.plugins, cniPath: dirs.cniPath }
    }
  })

const keyOf = (network: Network, attachment: Attachment): CacheKey => ({
  network: network.spec.name,
  containerId: attachment.containerId,
  ifname: attachment.ifname
})

const atLeast = (version: string, min: string): boolean => compareVersions(version, min) >= 0

/** ADD through the list, then the cache entry; the final result in the list's version. */
export const addNetwork = (network: Network, attachment: Attachment): Effect.Effect<unknown, CniError | PluginFailed, Requirements> =>
  Effect.gen(function*() {
    const result = yield* addChain(network.spec, attachment)
    const entry: CacheEntry = {
      kind: CACHE_KIND,
      containerId: attachment.containerId,
      config: encodeConfig(network.loaded.bytes),
      ifName: attachment.ifname,
      networkName: network.spec.name,
      netns: attachment.netns,
      cniArgs: attachment.cniArgs,
      capabilityArgs: attachment.capabilityArgs,
      ...(typeof result === "object" && result !== null ? { result: { ...result } } : {})
    }
    yield* writeCache(network.cacheDir, entry)
    return result
  })

/**
 * The cached args stand in for the ones not given on the command line (`useCached`), so
 * DEL and CHECK see what ADD saw (portmap needs its portMappings on DEL).
 */
export const withCachedArgs = (
  attachment: Attachment,
  entry: CacheEntry | undefined,
  use: { readonly args: boolean; readonly capabilities: boolean }
): Attachment => ({
  ...attachment,
  cniArgs: use.args && entry?.cniArgs !== undefined ? entry.cniArgs : attachment.cniArgs,
  capabilityArgs: use.capabilities && entry?.capabilityArgs !== undefined ? entry.capabilityArgs : attachment.capabilityArgs
})

/** What CHECK did. */
export type CheckOutcome = "checked" | "disabled"

/** CHECK through the list with the cached result (spec ≥ 0.4.0; skipped with `disableCheck`). */
export const checkNetwork = (
  network: Network,
  attachment: Attachment,
  useCached: { readonly args: boolean; readonly capabilities: boolean }
): Effect.Effect<CheckOutcome, CniError | PluginFailed, Requirements> =>
  Effect.gen(function*() {
    const { cniVersion, name } = network.spec
    if (!atLeast(cniVersion, "0.4.0")) {
      return yield* new CniErrorClass({
        code: ErrorCode.IncompatibleVersion,
        msg: `network ${name}: configuration version ${cniVersion} does not support the CHECK command`
      })
    }
    if (network.loaded.list.disableCheck === true) return "disabled"
    const read = yield* readCache(network.cacheDir, keyOf(network, attachment))
    if (read._tag === "Missing") {
      return yield* unknownContainer(
        `no cached result for ${attachment.containerId}/${attachment.ifname} in network ${name} (was it added?)`
      )
    }
    if (read._tag === "Corrupt") {
      return yield* new CniErrorClass({ code: ErrorCode.DecodeFailure, msg: `cached result of network ${name} is unreadable`, details: read.reason })
    }
    const cached = yield* toListVersion(read.entry.result ?? {}, cniVersion)
    yield* checkChain(network.spec, withCachedArgs(attachment, read.entry, useCached), cached)
    return "checked"
  })

/**
 * DEL through the list in reverse with the cached result (spec ≥ 0.4.0), then the entry
 * is removed. An unreadable entry is removed first and DEL goes on without a prevResult.
 */
export const delNetwork = (
  network: Network,
  attachment: Attachment,
  useCached: { readonly args: boolean; readonly capabilities: boolean }
): Effect.Effect<void, CniError | PluginFailed, Requirements> =>
  Effect.gen(function*() {
    const progress = yield* Progress
    const key = keyOf(network, attachment)
    const { cniVersion, name } = network.spec
    let cached: unknown = undefined
    let entry: CacheEntry | undefined = undefined
    if (atLeast(cniVersion, "0.4.0")) {
      const read = yield* readCache(network.cacheDir, key)
      if (read._tag === "Found") {
        entry = read.entry
        cached = yield* toListVersion(read.entry.result ?? {}, cniVersion).pipe(
          Effect.catch((error) =>
            progress.line(`warning: cached result of network ${name} does not convert to ${cniVersion} (${error.msg}); DEL goes on without it`).pipe(
              Effect.andThen(removeCache(network.cacheDir, key)),
              Effect.as(undefined)
            )
          )
        )
      } else if (read._tag === "Corrupt") {
        yield* progress.line(`warning: cached result of network ${name} is corrupt (${read.reason}); removed, DEL goes on without it`)
        yield* removeCache(network.cacheDir, key)
      }
    }
    yield* delChain(network.spec, withCachedArgs(attachment, entry, useCached), cached)
    yield* removeCache(network.cacheDir, key)
  })

/** What GC did. */
export interface GcReport {
  readonly deleted: ReadonlyArray<ValidAttachment>
  readonly kept: ReadonlyArray<ValidAttachment>
  /** whether GC was sent to the plugins (cniVersion ≥ 1.1.0 and not disableGC) */
  readonly collected: boolean
  readonly disabled: boolean
}

const attachmentId = (a: ValidAttachment): string => `${a.containerID}\u0000${a.ifname}`

/**
 * libcni's GCNetworkList: DEL every cached attachment of the network outside the valid
 * set, then GC (spec ≥ 1.1.0) to every plugin. `valid` undefined means "every cached
 * attachment whose netns still exists". Errors do not stop the work; they are all
 * reported at the end as Failures. `disableGC` skips everything.
 */
export const gcNetwork = (
  network: Network,
  valid: ReadonlyArray<ValidAttachment> | undefined,
  netnsExists: (path: string) => boolean
): Effect.Effect<GcReport, CniError | Failures, Requirements> =>
  Effect.gen(function*() {
    if (network.loaded.list.disableGC === true) return { deleted: [], kept: [], collected: false, disabled: true }
    const entries = yield* listCache(network.cacheDir, network.spec.name)
    const alive = (entry: CacheEntry) => entry.netns === undefined || entry.netns === "" || netnsExists(entry.netns)
    const validSet: ReadonlyArray<ValidAttachment> = valid ??
      entries.filter(alive).map((e) => ({ containerID: e.containerId, ifname: e.ifName }))
    const validIds = new Set(validSet.map(attachmentId))
    const failures: Array<PluginFailed | CniError> = []
    const deleted: Array<ValidAttachment> = []
    const kept: Array<ValidAttachment> = []
    for (const entry of entries) {
      const id = { containerID: entry.containerId, ifname: entry.ifName }
      if (validIds.has(attachmentId(id))) {
        kept.push(id)
        continue
      }
      const attachment: Attachment = {
        containerId: entry.containerId,
        netns: entry.netns ?? "",
        ifname: entry.ifName,
        cniArgs: entry.cniArgs ?? [],
        capabilityArgs: entry.capabilityArgs ?? {}
      }
      yield* delNetwork(network, attachment, { args: false, capabilities: false }).pipe(
        Effect.map(() => void deleted.push(id)),
        Effect.catch((error) => Effect.sync(() => void failures.push(error)))
      )
    }
    const collected = atLeast(network.spec.cniVersion, "1.1.0")
    if (collected) failures.push(...(yield* gcChain(network.spec, validSet)))
    if (failures.length > 0) {
      return yield* new Failures({
        summary: `GC of network ${network.spec.name}: ${failures.length} failure(s)`,
        failures: failures.map((f) => ({
          what: f._tag === "PluginFailed" ? `${f.plugin} ${f.verb}` : "cni",
          code: f.code,
          msg: f.msg,
          ...(f.details === undefined ? {} : { details: f.details })
        }))
      })
    }
    return { deleted, kept, collected, disabled: false }
  })

/** What STATUS did. */
export type StatusOutcome = "ready" | "unsupported"

/** STATUS to every plugin (spec ≥ 1.1.0; older lists have no STATUS and count as ready). */
export const statusNetwork = (network: Network): Effect.Effect<StatusOutcome, PluginFailed, Requirements> =>
  atLeast(network.spec.cniVersion, "1.1.0")
    ? statusChain(network.spec).pipe(Effect.as("ready" as const))
    : Effect.succeed("unsupported" as const)
