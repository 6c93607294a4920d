/**
 * What each `cni` subcommand does once its flags are parsed: build the attachment, open
 * the network, run the runtime operation, print. Errors are returned, printed by the CLI.
 */
import { Effect, Option } from "effect"
import type { Backend } from "@tscni/backend"
import type { PluginExec } from "@tscni/steps"
import { capabilityArgs, parseCniArgs } from "./capabilities.ts"
import type { Attachment, ValidAttachment } from "./chain.ts"
import { invalidConfig } from "@tscni/spec"
import type { CommandError } from "./errors.ts"
import type { Progress } from "./invoke.ts"
import { containerIdFor, createNamedNetns, deleteNamedNetns, listNamedNetns, netnsPath, validateContainerId, validateIfname } from "./netns.ts"
import { formatJson, formatResult } from "./output.ts"
import { addNetwork, checkNetwork, delNetwork, gcNetwork, openNetwork, type RuntimeDirs, statusNetwork } from "./runtime.ts"

/** Flags every network command has. */
export interface CommonOptions {
  readonly confDir: string
  /** --bin-dir, else CNI_PATH, else /opt/cni/bin */
  readonly binDir: Option.Option<string>
  readonly cacheDir: string
  readonly json: boolean
}

/** Flags of add/check/del. */
export interface AttachmentOptions extends CommonOptions {
  readonly network: string
  readonly netns: string
  readonly ifname: string
  readonly containerId: Option.Option<string>
  readonly args: Option.Option<string>
  readonly cap: ReadonlyArray<string>
  readonly annotation: ReadonlyArray<string>
}

/** The default bin dir when neither --bin-dir nor CNI_PATH says. */
export const DEFAULT_BIN_DIR = "/opt/cni/bin"

/** Where things are, from the flags and the environment. */
export const runtimeDirs = (options: CommonOptions, env: Record<string, string | undefined> = process.env): RuntimeDirs => ({
  confDir: options.confDir,
  cniPath: Option.getOrElse(options.binDir, () => (env.CNI_PATH !== undefined && env.CNI_PATH !== "" ? env.CNI_PATH : DEFAULT_BIN_DIR)),
  cacheDir: options.cacheDir
})

/** The attachment the flags describe (validated as libcni validates it). */
export const attachmentOf = (options: AttachmentOptions): Effect.Effect<Attachment, CommandError> =>
  Effect.gen(function*() {
    const netns = netnsPath(options.netns)
    const containerId = yield* validateContainerId(Option.getOrElse(options.containerId, () => containerIdFor(netns)))
    const ifname = yield* validateIfname(options.ifname)
    const cniArgs = Option.isSome(options.args) ? yield* parseCniArgs(options.args.value) : []
    return { containerId, netns, ifname, cniArgs, capabilityArgs: yield* capabilityArgs(options.cap, options.annotation) }
  })

const print = (text: string): Effect.Effect<void> => Effect.sync(() => void process.stdout.write(text + "\n"))

/** Which cached args stand in for flags not given (DEL/CHECK repeat what ADD had). */
const cachedArgsUse = (options: AttachmentOptions) => ({
  args: Option.isNone(options.args),
  capabilities: options.cap.length === 0 && options.annotation.length === 0
})

type Services = PluginExec | Progress

/** `cni add`: the result as tables, or its JSON. */
export const runAdd = (options: AttachmentOptions): Effect.Effect<void, CommandError, Services> =>
  Effect.gen(function*() {
    const attachment = yield* attachmentOf(options)
    const network = yield* openNetwork(runtimeDirs(options), options.network)
    const result = yield* addNetwork(network, attachment)
    yield* print(options.json ? formatJson(result) : formatResult(result))
  })

/** `cni check`. */
export const runCheck = (options: AttachmentOptions): Effect.Effect<void, CommandError, Services> =>
  Effect.gen(function*() {
    const attachment = yield* attachmentOf(options)
    const network = yield* openNetwork(runtimeDirs(options), options.network)
    const outcome = yield* checkNetwork(network, attachment, cachedArgsUse(options))
    const what = `${attachment.containerId}/${attachment.ifname} in network ${network.spec.name}`
    if (options.json) yield* print(formatJson({ network: network.spec.name, containerId: attachment.containerId, ifname: attachment.ifname, check: outcome }))
    else yield* print(outcome === "disabled" ? `CHECK is disabled for network ${network.spec.name}` : `${what}: ok`)
  })

/** `cni del`. */
export const runDel = (options: AttachmentOptions): Effect.Effect<void, CommandError, Services> =>
  Effect.gen(function*() {
    const attachment = yield* attachmentOf(options)
    const network = yield* openNetwork(runtimeDirs(options), options.network)
    yield* delNetwork(network, attachment, cachedArgsUse(options))
    if (!options.json) yield* print(`${attachment.containerId}/${attachment.ifname} deleted from network ${network.spec.name}`)
  })

/** `--valid containerID:ifname`. */
export const parseValid = (text: string): Effect.Effect<ValidAttachment, CommandError> => {
  const at = text.lastIndexOf(":")
  return at <= 0 || at === text.length - 1
    ? Effect.fail(invalidConfig("--valid", `expected CONTAINERID:IFNAME, got ${JSON.stringify(text)}`))
    : Effect.succeed({ containerID: text.slice(0, at), ifname: text.slice(at + 1) })
}

/** `cni gc`. */
export const runGc = (
  options: CommonOptions & { readonly network: string; readonly valid: ReadonlyArray<string> },
  netnsExists: (path: string) => boolean
): Effect.Effect<void, CommandError, Services> =>
  Effect.gen(function*() {
    const valid = options.valid.length > 0 ? yield* Effect.forEach(options.valid, parseValid) : undefined
    const network = yield* openNetwork(runtimeDirs(options), options.network)
    const report = yield* gcNetwork(network, valid, netnsExists)
    if (options.json) return yield* print(formatJson({ network: network.spec.name, ...report }))
    if (report.disabled) return yield* print(`GC is disabled for network ${network.spec.name}`)
    const lines = [
      ...report.deleted.map((a) => `deleted stale attachment ${a.containerID}/${a.ifname}`),
      `network ${network.spec.name}: ${report.deleted.length} stale attachment(s) deleted, ${report.kept.length} kept` +
      (report.collected ? `; GC sent to ${network.spec.plugins.length} plugin(s)` : `; no GC (cniVersion ${network.spec.cniVersion} < 1.1.0)`)
    ]
    yield* print(lines.join("\n"))
  })

/** `cni status`. */
export const runStatus = (options: CommonOptions & { readonly network: string }): Effect.Effect<void, CommandError, Services> =>
  Effect.gen(function*() {
    const network = yield* openNetwork(runtimeDirs(options), options.network)
    const outcome = yield* statusNetwork(network)
    if (options.json) return yield* print(formatJson({ network: network.spec.name, status: outcome }))
    yield* print(
      outcome === "ready"
        ? `network ${network.spec.name}: ready`
        : `network ${network.spec.name}: ready (cniVersion ${network.spec.cniVersion} has no STATUS)`
    )
  })

/** `cni netns create NAME`. */
export const runNetnsCreate = (name: string, json: boolean): Effect.Effect<void, CommandError, Backend> =>
  createNamedNetns(name).pipe(Effect.flatMap((path) => print(json ? formatJson({ name, path }) : path)))

/** `cni netns delete NAME`. */
export const runNetnsDelete = (name: string, json: boolean): Effect.Effect<void, CommandError, Backend> =>
  deleteNamedNetns(name).pipe(Effect.flatMap((path) => (json ? print(formatJson({ name, path, deleted: true })) : Effect.void)))

/** `cni netns list`. */
export const runNetnsList = (json: boolean, isNetns: (path: string) => boolean): Effect.Effect<void, CommandError> =>
  listNamedNetns(isNetns).pipe(
    Effect.flatMap((names) => (json ? print(formatJson(names)) : names.length > 0 ? print(names.join("\n")) : Effect.void))
  )
