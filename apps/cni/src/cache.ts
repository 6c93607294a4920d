/**
 * libcni's result cache, file for file: `<cacheDir>/<network>-<containerID>-<ifname>`
 * holding `{kind: "cniCacheV1", containerId, config, ifName, networkName, netns, cniArgs,
 * capabilityArgs, result}` where `config` is the list's JSON in base64 (Go marshals
 * []byte so), dir 0700, file 0600. A runtime using libcni and `cni` read each other's
 * entries.
 */
import { mkdirSync, readdirSync, readFileSync, rmSync } from "node:fs"
import { join } from "node:path"
import { Effect, Schema } from "effect"
import { type CniError, ioFailure } from "@tscni/spec"
import { readFileIfExists, replaceFile } from "@tscni/steps"

/** libcni's cache kind tag. */
export const CACHE_KIND = "cniCacheV1"

/** One cache file (omitempty keys optional, as Go writes them). */
export const CacheEntry = Schema.Struct({
  kind: Schema.Literal(CACHE_KIND),
  containerId: Schema.String,
  config: Schema.String,
  ifName: Schema.String,
  networkName: Schema.String,
  netns: Schema.optionalKey(Schema.String),
  cniArgs: Schema.optionalKey(Schema.Array(Schema.Tuple([Schema.String, Schema.String]))),
  capabilityArgs: Schema.optionalKey(Schema.Record(Schema.String, Schema.Unknown)),
  result: Schema.optionalKey(Schema.Record(Schema.String, Schema.Unknown))
})
export type CacheEntry = typeof CacheEntry.Type

/** The attachment a cache entry is about (what names its file). */
export interface CacheKey {
  readonly network: string
  readonly containerId: string
  readonly ifname: string
}

/** What reading one entry found. */
export type CacheRead =
  | { readonly _tag: "Missing" }
  | { readonly _tag: "Found"; readonly entry: CacheEntry }
  | { readonly _tag: "Corrupt"; readonly reason: string }

/** The file of an attachment, as libcni names it. */
export const cachePath = (dir: string, key: CacheKey): string => join(dir, `${key.network}-${key.containerId}-${key.ifname}`)

/** The base64 `config` field from the list's JSON text. */
export const encodeConfig = (bytes: string): string => Buffer.from(bytes, "utf8").toString("base64")

/** The list's JSON text back from a `config` field. */
export const decodeConfig = (config: string): string => Buffer.from(config, "base64").toString("utf8")

const message = (error: unknown): string => (error instanceof Error ? error.message : String(error))

const decodeEntry = Schema.decodeUnknownEffect(CacheEntry)

const parseEntry = (text: string): Effect.Effect<CacheEntry, string> =>
  Effect.try({ try: (): unknown => JSON.parse(text), catch: (e) => `not JSON: ${message(e)}` }).pipe(
    Effect.flatMap((json) => decodeEntry(json).pipe(Effect.mapError((e) => `not a ${CACHE_KIND} entry: ${message(e)}`)))
  )

/** The entry's JSON with the keys in libcni's (Go struct) order, empty ones omitted. */
export const serializeEntry = (entry: CacheEntry): string =>
  JSON.stringify({
    kind: entry.kind,
    containerId: entry.containerId,
    config: entry.config,
    ifName: entry.ifName,
    networkName: entry.networkName,
    ...(entry.netns !== undefined && entry.netns !== "" ? { netns: entry.netns } : {}),
    ...(entry.cniArgs !== undefined && entry.cniArgs.length > 0 ? { cniArgs: entry.cniArgs } : {}),
    ...(entry.capabilityArgs !== undefined && Object.keys(entry.capabilityArgs).length > 0 ? { capabilityArgs: entry.capabilityArgs } : {}),
    ...(entry.result !== undefined ? { result: entry.result } : {})
  })

/** Writes an entry atomically (temp file + rename): a crash never leaves half a file. */
export const writeCache = (dir: string, entry: CacheEntry): Effect.Effect<string, CniError> =>
  Effect.try({
    try: () => {
      mkdirSync(dir, { recursive: true, mode: 0o700 })
      const path = cachePath(dir, { network: entry.networkName, containerId: entry.containerId, ifname: entry.ifName })
      replaceFile(path, `${path}.tmp-${process.pid}`, serializeEntry(entry))
      return path
    },
    catch: (e) => ioFailure(`failed to write the cached result in ${dir}`, message(e))
  })

/** Reads an attachment's entry; a file that is not a cniCacheV1 entry is Corrupt. */
export const readCache = (dir: string, key: CacheKey): Effect.Effect<CacheRead, CniError> =>
  Effect.gen(function*() {
    const path = cachePath(dir, key)
    const text = yield* Effect.try({
      try: () => readFileIfExists(path),
      catch: (e) => ioFailure(`failed to read the cached result ${path}`, message(e))
    })
    if (text === undefined) return { _tag: "Missing" } as const
    return yield* parseEntry(text).pipe(
      Effect.map((entry): CacheRead => ({ _tag: "Found", entry })),
      Effect.catch((reason) => Effect.succeed<CacheRead>({ _tag: "Corrupt", reason }))
    )
  })

/** Removes an attachment's entry; a missing one is fine. */
export const removeCache = (dir: string, key: CacheKey): Effect.Effect<void, CniError> =>
  Effect.try({
    try: () => rmSync(cachePath(dir, key), { force: true }),
    catch: (e) => ioFailure(`failed to remove the cached result ${cachePath(dir, key)}`, message(e))
  })

/**
 * Every readable entry of `network` (libcni's GetCachedAttachments filtered by network),
 * in file-name order; unreadable files are skipped, a missing dir has none.
 */
export const listCache = (dir: string, network: string): Effect.Effect<ReadonlyArray<CacheEntry>, CniError> =>
  Effect.gen(function*() {
    const names = yield* Effect.try({ try: () => readdirSync(dir).sort(), catch: (e) => e }).pipe(
      Effect.catch((e) =>
        typeof e === "object" && e !== null && "code" in e && e.code === "ENOENT"
          ? Effect.succeed<Array<string>>([])
          : Effect.fail(ioFailure(`failed to list the result cache ${dir}`, message(e)))
      )
    )
    const entries: Array<CacheEntry> = []
    for (const name of names) {
      if (!name.startsWith(`${network}-`)) continue
      const text = yield* Effect.try({ try: () => readFileSync(join(dir, name), "utf8"), catch: message }).pipe(
        Effect.orElseSucceed(() => undefined)
      )
      if (text === undefined) continue
      const entry = yield* parseEntry(text).pipe(Effect.orElseSucceed(() => undefined))
      if (entry === undefined || entry.networkName !== network || entry.ifName === "") continue
      entries.push(entry)
    }
    return entries
  })
