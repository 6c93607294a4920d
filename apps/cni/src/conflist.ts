/**
 * Finding a network's configuration list in a conf dir, as libcni's LoadConfList does:
 * `*.conflist` files first, then single-plugin `*.conf` / `*.json` files (each group in
 * lexical order), the first whose `name` matches wins; a single-plugin file is wrapped
 * into a one-plugin list. Files that are not JSON objects with a name are skipped (and
 * named when nothing matched) instead of failing every network, as libcni would.
 */
import { readdirSync, readFileSync } from "node:fs"
import { extname, join } from "node:path"
import { Effect } from "effect"
import { type CniError, compareVersions, decodeNetConfList, invalidConfig, ioFailure, type NetConfList } from "@tscni/spec"

/** A network's list as loaded: decoded for reading, raw for sending, bytes for the cache. */
export interface LoadedList {
  readonly file: string
  /** the list, validated */
  readonly list: NetConfList
  /** each plugin's config exactly as written (unknown keys and all) */
  readonly plugins: ReadonlyArray<Readonly<Record<string, unknown>> & { readonly type: string }>
  /** the list's JSON as libcni caches it: the file's bytes, or the wrapped single config */
  readonly bytes: string
}

const LIST_EXTENSIONS = [".conflist"]
const SINGLE_EXTENSIONS = [".conf", ".json"]

const isObject = (value: unknown): value is Record<string, unknown> =>
  typeof value === "object" && value !== null && !Array.isArray(value)

/** The files of `dir` with one of `extensions`, in lexical order; a missing dir has none. */
export const confFiles = (dir: string, extensions: ReadonlyArray<string>): Effect.Effect<ReadonlyArray<string>, CniError> =>
  Effect.try({
    try: () =>
      readdirSync(dir, { withFileTypes: true })
        .filter((entry) => !entry.isDirectory() && extensions.includes(extname(entry.name)))
        .map((entry) => entry.name)
        .sort()
        .map((name) => join(dir, name)),
    catch: (error) => error
  }).pipe(
    Effect.catch((error) =>
      isObject(error) && error.code === "ENOENT"
        ? Effect.succeed([])
        : Effect.fail(ioFailure(`cannot read conf dir ${dir}`, error instanceof Error ? error.message : String(error)))
    )
  )

type Parsed = { readonly file: string; readonly text: string; readonly json: Record<string, unknown> }

const parseFile = (file: string): Parsed | string => {
  let text: string
  try {
    text = readFileSync(file, "utf8")
  } catch (error) {
    return error instanceof Error ? error.message : String(error)
  }
  let json: unknown
  try {
    json = JSON.parse(text)
  } catch (error) {
    return `not JSON: ${error instanceof Error ? error.message : String(error)}`
  }
  if (!isObject(json)) return "not a JSON object"
  if (typeof json.name !== "string") return "no name"
  return { file, text, json }
}

/** libcni 1.1: with `cniVersions` and no `cniVersion`, the list's version is the highest listed. */
const withVersion = (json: Record<string, unknown>): Record<string, unknown> => {
  if (typeof json.cniVersion === "string" || !Array.isArray(json.cniVersions)) return json
  const versions = json.cniVersions.filter((v): v is string => typeof v === "string")
  const highest = [...versions].sort(compareVersions).at(-1)
  return highest === undefined ? json : { ...json, cniVersion: highest }
}

const fromList = (parsed: Parsed): Effect.Effect<LoadedList, CniError> =>
  decodeNetConfList(withVersion(parsed.json)).pipe(
    Effect.mapError((error) => invalidConfig(parsed.file, error.msg)),
    Effect.map((list) => ({
      file: parsed.file,
      list,
      plugins: list.plugins,
      bytes: parsed.text
    }))
  )

/** A single-plugin config as libcni's ConfListFromConf makes it: `{cniVersion, name, plugins: [conf]}`. */
export const wrapSingle = (conf: Readonly<Record<string, unknown>>): Record<string, unknown> => ({
  cniVersion: conf.cniVersion,
  name: conf.name,
  plugins: [conf]
})

const fromSingle = (parsed: Parsed): Effect.Effect<LoadedList, CniError> => {
  // a list saved as .conf/.json is still a list
  if (Array.isArray(parsed.json.plugins)) return fromList(parsed)
  const wrapped = wrapSingle(parsed.json)
  const text = JSON.stringify(wrapped)
  return fromList({ file: parsed.file, text, json: wrapped })
}

/** Every network name found in `dir`, in the order lookup would try them. */
export const listNetworks = (dir: string): Effect.Effect<ReadonlyArray<{ name: string; file: string }>, CniError> =>
  Effect.gen(function*() {
    const files = [...(yield* confFiles(dir, LIST_EXTENSIONS)), ...(yield* confFiles(dir, SINGLE_EXTENSIONS))]
    const found: Array<{ name: string; file: string }> = []
    for (const file of files) {
      const parsed = parseFile(file)
      if (typeof parsed !== "string") found.push({ name: String(parsed.json.name), file })
    }
    return found
  })

/** Loads the network named `name` from `dir`; not found is code 7 naming what was there. */
export const loadNetwork = (dir: string, name: string): Effect.Effect<LoadedList, CniError> =>
  Effect.gen(function*() {
    const skipped: Array<string> = []
    const seen: Array<string> = []
    const groups = [
      { files: yield* confFiles(dir, LIST_EXTENSIONS), load: fromList },
      { files: yield* confFiles(dir, SINGLE_EXTENSIONS), load: fromSingle }
    ]
    for (const group of groups) {
      for (const file of group.files) {
        const parsed = parseFile(file)
        if (typeof parsed === "string") {
          skipped.push(`${file}: ${parsed}`)
          continue
        }
        if (parsed.json.name === name) return yield* group.load(parsed)
        seen.push(String(parsed.json.name))
      }
    }
    const notes = [
      seen.length > 0 ? `networks there: ${seen.join(", ")}` : "no network configurations there",
      ...(skipped.length > 0 ? [`skipped: ${skipped.join("; ")}`] : [])
    ]
    return yield* invalidConfig("", `no network named ${JSON.stringify(name)} in ${dir} (${notes.join("; ")})`)
  })
