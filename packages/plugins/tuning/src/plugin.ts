import { basename, dirname, join } from "node:path"
import { Effect } from "effect"
import { Backend, isMissingNetns, isNotFound } from "@tscni/backend"
import { CheckFailed, Pipeline } from "@tscni/engine"
import type { PluginDefinition, PluginRequest } from "@tscni/skel"
import { inSandbox, invalidConfig, ioFailure, type Result, validAttachments } from "@tscni/spec"
import { resolveSysctls, type TuningOptions, type TuningSettings, tuningSettings } from "./config.ts"
import { tuningPipeline } from "./pipeline.ts"
import { listStateFiles, networkDir, readState, removeState, statePath } from "./state.ts"

const stateFileOf = (request: PluginRequest, settings: TuningSettings): string =>
  statePath(settings.dataDir, settings.network, request.env.containerId, request.env.ifname)

/**
 * prevResult with the interface's new MAC, as the reference reports it: the interface of
 * that name inside a sandbox (the pod's, not a host-side one that happens to share it).
 */
const withMac = (prev: Result, cniVersion: string, ifname: string, mac: string | undefined): Result => ({
  ...prev,
  cniVersion,
  ...(mac !== undefined && prev.interfaces !== undefined
    ? {
      interfaces: prev.interfaces.map((i) => (i.name === ifname && inSandbox(i) ? { ...i, mac } : i))
    }
    : {})
})

/** The reference's CHECK also fails when the interface is gone, whatever was configured. */
const checkInterface = (request: PluginRequest) =>
  Effect.gen(function*() {
    const { netns, ifname } = request.env
    // a missing namespace is the container's absence (code 3), not a missing interface
    const link = yield* (yield* Backend).getLink(netns, ifname).pipe(
      Effect.catchIf((error) => isNotFound(error) && !isMissingNetns(error), () => Effect.succeed(undefined))
    )
    if (link === undefined) return yield* new CheckFailed({ step: "setLinkOptions", message: `${ifname} is missing in ${netns}` })
  })

/**
 * DEL: restore what the state file says ADD replaced, in reverse order, in the namespace
 * the runtime names now. No file (no ADD, or DEL ran already): nothing to do. No
 * namespace, or a namespace already gone: nothing left to restore, the file goes.
 *
 * A file that cannot be read whole (not JSON, not a state record, or an entry that does
 * not decode) holds restore data DEL cannot use. While the pod's namespace exists, DEL
 * fails (code 5, naming the file and why) and keeps the file, rather than delete the pod's
 * original settings in silence: the operator restores them, removes the file, and the next
 * DEL succeeds (GC removes such files too). Once the namespace is gone there is nothing to
 * restore: the file goes, with a warning in the log.
 */
const restore = (request: PluginRequest, settings: TuningSettings) =>
  Effect.gen(function*() {
    const path = stateFileOf(request, settings)
    yield* removeTempFiles(path)
    const state = yield* readState(path)
    if (state._tag === "absent") return
    const netns = request.env.netns
    const podGone = netns === "" || !(yield* (yield* Backend).netnsExists(netns))
    const decoded = state._tag === "found" ? Pipeline.decodeHandles(tuningPipeline, state.record.handles) : undefined
    const unusable = state._tag === "corrupt"
      ? state.why
      : decoded !== undefined && decoded.undecodable.length > 0
      ? decoded.undecodable.map((entry) => `entry ${entry.step}: ${entry.message}`).join("; ")
      : undefined
    if (unusable !== undefined) {
      if (!podGone) {
        return yield* ioFailure(
          `tuning: the state file ${path} cannot be used (${unusable}): the pod's original settings are unknown, so it is kept`,
          "restore the pod's sysctls and link settings by hand, then remove the file; GC removes it too"
        )
      }
      yield* Effect.logWarning(`tuning: the state file ${path} cannot be used (${unusable}); the pod's namespace is gone, so there is nothing to restore: removing it`)
    } else if (!podGone && decoded !== undefined) {
      yield* Pipeline.runDel(tuningPipeline, { netns, ifname: request.env.ifname, sysctls: [], link: [], saved: decoded.handles })
    }
    yield* removeState(path)
  })

/**
 * Temp files of this attachment's state file: left by an ADD killed between writing and
 * renaming, before it changed anything, so they are only garbage.
 */
const removeTempFiles = (path: string) =>
  Effect.gen(function*() {
    const dir = dirname(path)
    const prefix = `${basename(path)}.`
    for (const name of yield* listStateFiles(dir)) {
      if (name.startsWith(prefix) && name.endsWith(".tmp")) yield* removeState(join(dir, name))
    }
  })

/** GC: state files of attachments the runtime no longer knows (and stray temp files) go. */
const collectGarbage = (request: PluginRequest, settings: TuningSettings) =>
  Effect.gen(function*() {
    const attachments = validAttachments(request.conf)
    // Without the runtime's list nothing can be judged stale: remove nothing.
    if (attachments === undefined) return
    const valid = new Set(attachments.map((a) => `${a.containerID}/${a.ifname}`))
    const dir = networkDir(settings.dataDir, settings.network)
    for (const name of yield* listStateFiles(dir)) {
      const path = join(dir, name)
      if (name.endsWith(".tmp")) {
        yield* removeState(path)
        continue
      }
      if (!name.endsWith(".json")) continue
      const state = yield* readState(path)
      if (state._tag === "corrupt" || (state._tag === "found" && !valid.has(`${state.record.containerId}/${state.record.ifname}`))) {
        yield* removeState(path)
      }
    }
  })

/**
 * tuning: sysctls in the pod's namespace and the pod interface's MAC, MTU, promiscuous and
 * all-multicast modes and queue length; every previous value is restored by DEL (from the
 * per-attachment state file), CHECK compares with the config, GC drops stale state.
 */
export const makeTuningPlugin = (options: TuningOptions): PluginDefinition<Backend> => ({
  name: "tuning",
  cniArgs: ["MAC"],
  add: (request) =>
    Effect.gen(function*() {
      const settings = yield* tuningSettings(request, options)
      const sysctls = yield* resolveSysctls(settings, request.env.ifname, options)
      const prev = request.prevResult
      if (prev === undefined) {
        return yield* invalidConfig("prevResult", "tuning is a chained plugin and needs the previous plugin's result")
      }
      yield* Pipeline.apply(tuningPipeline, {
        containerId: request.env.containerId,
        netns: request.env.netns,
        ifname: request.env.ifname,
        sysctls,
        link: settings.link,
        statePath: stateFileOf(request, settings)
      })
      return withMac(prev, request.conf.cniVersion, request.env.ifname, settings.mac)
    }),
  check: (request) =>
    Effect.gen(function*() {
      const settings = yield* tuningSettings(request, options)
      const { netns, ifname } = request.env
      const sysctls = yield* resolveSysctls(settings, ifname, options)
      yield* checkInterface(request)
      yield* Pipeline.runCheck(tuningPipeline, { netns, ifname, sysctls, link: settings.link, saved: undefined })
    }),
  del: (request) => Effect.flatMap(tuningSettings(request, options), (settings) => restore(request, settings)),
  gc: (request) => Effect.flatMap(tuningSettings(request, options), (settings) => collectGarbage(request, settings)),
  status: (request) => Effect.asVoid(tuningSettings(request, options))
})
