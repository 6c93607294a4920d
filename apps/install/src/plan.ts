/**
 * From options to a plan: every input of every step, computed and validated before any
 * step runs (sources exist and are executable, plugin names are known, the conflist is
 * valid and names only plugins that will be there). A bad option changes nothing.
 */
import { basename, join } from "node:path"
import { Effect, Option } from "effect"
import { PluginExec } from "@tscni/steps/PluginExec"
import { pluginTypes, renderedName, renderTemplate, requireConflistName, validateConflist, validatePodCidr } from "./conflist.ts"
import { type InstallError, usageError } from "./errors.ts"
import { HostFs } from "./HostFs.ts"
import type { FileInput, LinkInput } from "./place.ts"
import type { InstallMode } from "./record.ts"

/** The multicall binary's name, in the source and in the bin dir. */
export const MULTICALL = "tscni"

/** Executables built next to the plugins that are not plugins. */
export const NOT_PLUGINS: ReadonlySet<string> = new Set([MULTICALL, "tscni-install", "cni"])

/** Where the conflist comes from. */
export type ConflistSource =
  | { readonly kind: "none" }
  | { readonly kind: "file"; readonly path: string }
  | { readonly kind: "template"; readonly path: string; readonly podCidr: string | undefined }

/** Everything `tscni-install` was asked to do (after defaults). */
export interface InstallOptions {
  readonly source: string
  readonly binDir: string
  readonly confDir: string
  readonly mode: InstallMode
  /** undefined: every plugin the source has */
  readonly plugins: ReadonlyArray<string> | undefined
  readonly conflist: ConflistSource
  readonly dryRun: boolean
}

/** The input of the install pipeline. */
export interface InstallPlan {
  readonly mode: InstallMode
  readonly binDir: string
  readonly confDir: string | null
  readonly plugins: ReadonlyArray<string>
  readonly dirs: ReadonlyArray<{ readonly path: string }>
  readonly files: ReadonlyArray<FileInput>
  readonly links: ReadonlyArray<LinkInput>
  readonly verify: ReadonlyArray<{ readonly name: string; readonly path: string }>
  readonly conflist: FileInput | undefined
  readonly time: string
}

const PLUGIN_NAME = /^[A-Za-z0-9][A-Za-z0-9._-]*$/

/** A regular file with an execute bit: what a built plugin is. */
const isExecutableFile = (path: string): Effect.Effect<boolean, InstallError, HostFs> =>
  Effect.gen(function*() {
    const info = yield* (yield* HostFs).lstat(path)
    return Option.isSome(info) && info.value.type === "file" && (info.value.mode & 0o111) !== 0
  })

const requireExecutable = (path: string, what: string): Effect.Effect<void, InstallError, HostFs> =>
  Effect.flatMap(isExecutableFile(path), (ok) =>
    ok ? Effect.void : Effect.fail(usageError(`${what} ${path} is missing or not an executable file (run \`bun run build\`?)`, path))
  )

/**
 * The plugins a multicall binary serves, asked of the binary itself: invoked under its
 * own name it refuses with a message listing them. None when it does not say.
 */
export const multicallPlugins = (binary: string): Effect.Effect<ReadonlyArray<string> | undefined, never, PluginExec> =>
  Effect.gen(function*() {
    const exec = yield* PluginExec
    const output = yield* exec.exec({ path: binary, command: "", env: {}, stdin: "" }).pipe(
      Effect.timeoutOrElse({ duration: 10_000, orElse: () => Effect.succeed(undefined) }),
      Effect.orElseSucceed(() => undefined)
    )
    const listed = output === undefined ? null : /one of: ([^)]*)\)/.exec(output.stdout)
    if (listed === null || listed[1] === undefined) return undefined
    return listed[1].split(",").map((name) => name.trim()).filter((name) => PLUGIN_NAME.test(name))
  })

/** The per-plugin binaries in a source dir: executable files that are not tscni's other programs. */
const pluginBinaries = (source: string): Effect.Effect<ReadonlyArray<string>, InstallError, HostFs> =>
  Effect.gen(function*() {
    const fs = yield* HostFs
    const names = [...(yield* fs.readDir(source))].sort()
    const plugins: Array<string> = []
    for (const name of names) {
      if (name.startsWith(".") || NOT_PLUGINS.has(name) || !PLUGIN_NAME.test(name)) continue
      if (yield* isExecutableFile(join(source, name))) plugins.push(name)
    }
    return plugins
  })

const choosePlugins = (options: InstallOptions): Effect.Effect<ReadonlyArray<string>, InstallError, HostFs | PluginExec> =>
  Effect.gen(function*() {
    const requested = options.plugins
    for (const name of requested ?? []) {
      if (!PLUGIN_NAME.test(name) || NOT_PLUGINS.has(name)) return yield* usageError(`not a plugin name: ${JSON.stringify(name)}`)
    }
    if (options.mode === "plugins") {
      const available = yield* pluginBinaries(options.source)
      if (requested === undefined) return available
      const missing = requested.filter((name) => !available.includes(name))
      if (missing.length > 0) {
        return yield* usageError(`no executable for ${missing.join(", ")} in ${options.source} (it has: ${available.join(", ") || "none"})`)
      }
      return requested
    }
    const known = yield* multicallPlugins(join(options.source, MULTICALL))
    if (requested === undefined) {
      if (known === undefined) {
        return yield* usageError(`${join(options.source, MULTICALL)} did not say which plugins it serves; name them with --plugins`)
      }
      return known
    }
    const unknown = known === undefined ? [] : requested.filter((name) => !known.includes(name))
    if (unknown.length > 0) {
      return yield* usageError(`${MULTICALL} does not serve ${unknown.join(", ")} (it serves: ${(known ?? []).join(", ")})`)
    }
    return requested
  })

/** The conflist's name and text, read or rendered and validated; undefined for none. */
const loadConflist = (
  conflist: ConflistSource
): Effect.Effect<{ readonly name: string; readonly text: string; readonly types: ReadonlyArray<string> } | undefined, InstallError, HostFs> =>
  Effect.gen(function*() {
    if (conflist.kind === "none") return undefined
    const fs = yield* HostFs
    const raw = yield* fs.readText(conflist.path)
    let text = raw
    if (conflist.kind === "template") {
      if (conflist.podCidr === undefined || conflist.podCidr.trim() === "") {
        return yield* usageError("a conflist template needs the pod CIDR: --pod-cidr CIDR or the POD_CIDR environment variable")
      }
      const podCidr = yield* validatePodCidr(conflist.podCidr)
      text = yield* renderTemplate(raw, podCidr, conflist.path)
    }
    const name = yield* requireConflistName(
      conflist.kind === "template" ? renderedName(conflist.path) : basename(conflist.path),
      conflist.path
    )
    const list = yield* validateConflist(text, conflist.path)
    return { name, text, types: pluginTypes(list) }
  })

/** Validates the options against the host and computes every step's input. */
export const makePlan = (options: InstallOptions): Effect.Effect<InstallPlan, InstallError, HostFs | PluginExec> =>
  Effect.gen(function*() {
    const fs = yield* HostFs
    const sourceInfo = yield* fs.lstat(options.source)
    if (Option.isNone(sourceInfo) || (sourceInfo.value.type !== "directory" && sourceInfo.value.type !== "symlink")) {
      return yield* usageError(`source dir ${options.source} does not exist (build with \`bun run build\` or pass --source)`, options.source)
    }
    if (options.mode === "multicall") yield* requireExecutable(join(options.source, MULTICALL), "multicall binary")
    const plugins = yield* choosePlugins(options)
    if (plugins.length === 0) return yield* usageError(`no plugins to install from ${options.source}`, options.source)
    if (options.mode === "plugins") {
      for (const name of plugins) yield* requireExecutable(join(options.source, name), "plugin binary")
    }

    const conflist = yield* loadConflist(options.conflist)
    if (conflist !== undefined) {
      const missing: Array<string> = []
      for (const type of conflist.types) {
        if (plugins.includes(type)) continue
        if (Option.isNone(yield* fs.lstat(join(options.binDir, type)))) missing.push(type)
      }
      if (missing.length > 0) {
        return yield* usageError(
          `the conflist uses ${missing.join(", ")}, which would be neither installed nor found in ${options.binDir}`
        )
      }
    }

    const binary = (name: string) => join(options.binDir, name)
    const files: ReadonlyArray<FileInput> = options.mode === "multicall"
      ? [{ path: binary(MULTICALL), content: { kind: "copy", from: join(options.source, MULTICALL), mode: 0o755 } }]
      : plugins.map((name) => ({ path: binary(name), content: { kind: "copy", from: join(options.source, name), mode: 0o755 } }))
    return {
      mode: options.mode,
      binDir: options.binDir,
      confDir: conflist === undefined ? null : options.confDir,
      plugins,
      dirs: conflist === undefined ? [{ path: options.binDir }] : [{ path: options.binDir }, { path: options.confDir }],
      files,
      links: options.mode === "multicall" ? plugins.map((name) => ({ path: binary(name), target: MULTICALL })) : [],
      verify: plugins.map((name) => ({ name, path: binary(name) })),
      conflist: conflist === undefined
        ? undefined
        : { path: join(options.confDir, conflist.name), content: { kind: "text", text: conflist.text, mode: 0o644 } },
      time: new Date().toISOString()
    }
  })
