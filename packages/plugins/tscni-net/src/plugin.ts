import { join } from "node:path"
import { Effect } from "effect"
import { readNodeFile } from "@tscni/cluster/nodeFile"
import { CheckFailed, Pipeline } from "@tscni/engine"
import { attachmentOf, type PluginDefinition, type PluginRequest } from "@tscni/skel"
import { listFiles, removeFileIfExists } from "@tscni/lock"
import { ioFailure, notAvailable, tryAgainLater, validAttachments } from "@tscni/spec"
import { delegateIpam, type PluginExec } from "@tscni/steps"
import { renderDelegate, type TscniNetSettings, tscniNetSettings } from "./config.ts"
import { type TscniNetKnown, tscniNetPipeline } from "./pipeline.ts"
import { readSavedDelegate } from "./steps/saveDelegate.ts"

/** An attachment's saved delegate: `<dataDir>/<network>/<containerId>-<ifname>`. */
const savedPath = (settings: TscniNetSettings, containerId: string, ifname: string): string =>
  join(settings.dataDir, settings.network, `${containerId}-${ifname}`)

const noLease = (settings: TscniNetSettings) =>
  `tscni-net: no node file at ${settings.nodeFile}: the tscni agent has not leased a subnet for this node yet`

/** The delegate for this node now, from the node file; undefined without one. */
const rendered = (request: PluginRequest, settings: TscniNetSettings) =>
  Effect.map(readNodeFile(settings.nodeFile), (node) => (node === undefined ? undefined : renderDelegate(request, settings, node)))

const knownOf = (request: PluginRequest, settings: TscniNetSettings, delegate: Readonly<Record<string, unknown>> | undefined): TscniNetKnown => ({
  attachment: attachmentOf(request),
  path: savedPath(settings, request.env.containerId, request.env.ifname),
  delegate,
  prevResult: request.prevResult,
  rawPrevResult: request.raw.prevResult
})

/**
 * The meta plugin of the cluster network (flannel's `flannel` plugin, for tscni): renders
 * the pod's network from the node file the agent keeps (default: bridge + host-local on the
 * node's subnet, the node's MTU), keeps the rendered delegate per attachment, and delegates
 * every verb to it. Without a node file, ADD is code 11 (try again later) and STATUS code
 * 50: the runtime holds pods until the node has its subnet.
 */
export const tscniNetPlugin: PluginDefinition<PluginExec> = {
  name: "tscni-net",
  add: (request) =>
    Effect.gen(function*() {
      const settings = yield* tscniNetSettings(request)
      const delegate = yield* rendered(request, settings)
      if (delegate === undefined) return yield* tryAgainLater(noLease(settings))
      const handles = yield* Pipeline.apply(tscniNetPipeline, {
        ...attachmentOf(request),
        delegate,
        path: savedPath(settings, request.env.containerId, request.env.ifname)
      })
      return handles.delegate.result
    }),
  check: (request) =>
    Effect.gen(function*() {
      const settings = yield* tscniNetSettings(request)
      const path = savedPath(settings, request.env.containerId, request.env.ifname)
      const saved = yield* readSavedDelegate(path)
      if (saved === undefined) return yield* new CheckFailed({ step: "saveDelegate", message: `no saved delegate at ${path}: this attachment was not made by tscni-net` })
      yield* Pipeline.runCheck(tscniNetPipeline, knownOf(request, settings, saved))
    }),
  del: (request) =>
    Effect.gen(function*() {
      const settings = yield* tscniNetSettings(request)
      // the saved delegate when there is one; else what the node would render now (a DEL is
      // idempotent, so asking the delegate to remove what may not exist is right); else nothing
      const saved = yield* readSavedDelegate(savedPath(settings, request.env.containerId, request.env.ifname))
      const delegate = saved ?? (yield* rendered(request, settings))
      yield* Pipeline.runDel(tscniNetPipeline, knownOf(request, settings, delegate))
    }),
  gc: (request) =>
    Effect.gen(function*() {
      const settings = yield* tscniNetSettings(request)
      const valid = validAttachments(request.conf)
      if (valid === undefined) return
      const keep = new Set(valid.map((attachment) => `${attachment.containerID}-${attachment.ifname}`))
      const dir = join(settings.dataDir, settings.network)
      yield* Effect.try({
        try: () => {
          for (const name of listFiles(dir)) if (!keep.has(name)) removeFileIfExists(join(dir, name))
        },
        catch: (error) => ioFailure(`tscni-net GC: ${dir}: ${error instanceof Error ? error.message : String(error)}`)
      })
      const delegate = yield* rendered(request, settings)
      if (delegate === undefined) return
      yield* delegateIpam("GC", {
        pluginType: settings.delegateType,
        config: { ...delegate, "cni.dev/valid-attachments": request.raw["cni.dev/valid-attachments"] },
        cniPath: request.env.pathRaw,
        args: request.env.argsRaw
      })
    }),
  status: (request) =>
    Effect.gen(function*() {
      const settings = yield* tscniNetSettings(request)
      const delegate = yield* rendered(request, settings)
      if (delegate === undefined) return yield* notAvailable(noLease(settings))
      yield* delegateIpam("STATUS", { pluginType: settings.delegateType, config: delegate, cniPath: request.env.pathRaw, args: request.env.argsRaw })
    })
}
