/**
 * Running a list's plugins for one verb, as libcni does: ADD forward threading each
 * result into the next plugin's `prevResult` (converted into the list's version), CHECK
 * forward and DEL in reverse with the cached result, all three stopping at the first
 * error; GC to every plugin, errors collected; STATUS to every plugin, first failure wins.
 */
import { Effect } from "effect"
import { decodeResult, encodeResult } from "@tscni/spec"
import type { PluginExec } from "@tscni/steps"
import { buildPluginConfig, type CapabilityArgs, formatCniArgs } from "./capabilities.ts"
import { type PluginFailed, pluginFailed } from "./errors.ts"
import { type ChainVerb, invokePlugin, type PluginRequestEnv, type Progress } from "./invoke.ts"

/** A list ready to run: its plugins as written, its name and negotiated version. */
export interface ChainSpec {
  readonly name: string
  readonly cniVersion: string
  readonly plugins: ReadonlyArray<Readonly<Record<string, unknown>> & { readonly type: string }>
  /** CNI_PATH */
  readonly cniPath: string
}

/** One attachment of a container to the network (libcni's RuntimeConf). */
export interface Attachment {
  readonly containerId: string
  readonly netns: string
  readonly ifname: string
  readonly cniArgs: ReadonlyArray<readonly [string, string]>
  readonly capabilityArgs: CapabilityArgs
}

/** One valid attachment, as GC's `cni.dev/valid-attachments` lists it. */
export interface ValidAttachment {
  readonly containerID: string
  readonly ifname: string
}

type Requirements = PluginExec | Progress

const envOf = (spec: ChainSpec, attachment: Attachment): PluginRequestEnv => ({
  containerId: attachment.containerId,
  netns: attachment.netns,
  ifname: attachment.ifname,
  args: formatCniArgs(attachment.cniArgs),
  path: spec.cniPath
})

const versionOf = (json: unknown): string | undefined =>
  typeof json === "object" && json !== null && "cniVersion" in json && typeof json.cniVersion === "string"
    ? json.cniVersion
    : undefined

/** A result JSON in its own version re-expressed in the list's version. */
export const toListVersion = (json: unknown, cniVersion: string) =>
  decodeResult(json, versionOf(json) ?? cniVersion).pipe(Effect.flatMap((result) => encodeResult(result, cniVersion)))

const attachmentVerb = (
  spec: ChainSpec,
  attachment: Attachment,
  verb: ChainVerb,
  plugin: ChainSpec["plugins"][number],
  prevResult: unknown
) =>
  invokePlugin(
    {
      type: plugin.type,
      verb,
      env: envOf(spec, attachment),
      config: buildPluginConfig(plugin, {
        name: spec.name,
        cniVersion: spec.cniVersion,
        prevResult,
        capabilityArgs: attachment.capabilityArgs
      })
    },
    { report: spec.plugins.length > 1 }
  )

/** ADD through the list; the last plugin's result, in the list's version. */
export const addChain = (spec: ChainSpec, attachment: Attachment): Effect.Effect<unknown, PluginFailed, Requirements> =>
  Effect.gen(function*() {
    let result: unknown = undefined
    for (const plugin of spec.plugins) {
      const output = yield* attachmentVerb(spec, attachment, "ADD", plugin, result)
      result = yield* toListVersion(output, spec.cniVersion).pipe(
        Effect.mapError((error) => pluginFailed(plugin.type, "ADD", error))
      )
    }
    return result
  })

/** CHECK through the list, forward, each plugin given the cached result. */
export const checkChain = (
  spec: ChainSpec,
  attachment: Attachment,
  cachedResult: unknown
): Effect.Effect<void, PluginFailed, Requirements> =>
  Effect.forEach(spec.plugins, (plugin) => attachmentVerb(spec, attachment, "CHECK", plugin, cachedResult), { discard: true })

/** DEL through the list in reverse, each plugin given the cached result (when there is one). */
export const delChain = (
  spec: ChainSpec,
  attachment: Attachment,
  cachedResult: unknown
): Effect.Effect<void, PluginFailed, Requirements> =>
  Effect.forEach([...spec.plugins].reverse(), (plugin) => attachmentVerb(spec, attachment, "DEL", plugin, cachedResult), {
    discard: true
  })

const noAttachment: Attachment = { containerId: "", netns: "", ifname: "", cniArgs: [], capabilityArgs: {} }

/** A network-wide verb (GC, STATUS) to one plugin: name, cniVersion and `extra` injected, no runtimeConfig. */
const networkVerb = (
  spec: ChainSpec,
  verb: "GC" | "STATUS",
  plugin: ChainSpec["plugins"][number],
  extra: Readonly<Record<string, unknown>>,
  report: boolean
) =>
  invokePlugin(
    {
      type: plugin.type,
      verb,
      env: envOf(spec, noAttachment),
      config: buildPluginConfig(plugin, { name: spec.name, cniVersion: spec.cniVersion, extra })
    },
    { report }
  )

/**
 * GC to every plugin with the valid attachments under both keys (`cni.dev/valid-attachments`
 * and libcni's older `cni.dev/attachments`). Every plugin is asked; the failures are returned.
 */
export const gcChain = (
  spec: ChainSpec,
  valid: ReadonlyArray<ValidAttachment>
): Effect.Effect<ReadonlyArray<PluginFailed>, never, Requirements> =>
  Effect.gen(function*() {
    const extra = { "cni.dev/valid-attachments": valid, "cni.dev/attachments": valid }
    const failures: Array<PluginFailed> = []
    for (const plugin of spec.plugins) {
      yield* networkVerb(spec, "GC", plugin, extra, true).pipe(
        Effect.catch((failure) => Effect.sync(() => void failures.push(failure)))
      )
    }
    return failures
  })

/** STATUS to every plugin; the first that is not ready fails the whole. */
export const statusChain = (spec: ChainSpec): Effect.Effect<void, PluginFailed, Requirements> =>
  Effect.forEach(spec.plugins, (plugin) => networkVerb(spec, "STATUS", plugin, {}, spec.plugins.length > 1), { discard: true })
