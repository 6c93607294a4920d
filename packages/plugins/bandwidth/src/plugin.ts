import { Effect } from "effect"
import { Backend, HOST_NETNS, type LinkInfo } from "@tscni/backend"
import { Pipeline } from "@tscni/engine"
import type { PluginDefinition, PluginRequest } from "@tscni/skel"
import { type CniError, invalidConfig, type Result, validAttachments } from "@tscni/spec"
import { collectStaleLinks } from "@tscni/steps"
import { type BandwidthSettings, bandwidthSettings, shapesNothing } from "./config.ts"
import { findHostVeth, guessHostVeth } from "./hostVeth.ts"
import { IFB_PREFIX, ifbAlias, ifbAliasPrefix, ifbName } from "./names.ts"
import { type BandwidthHandles, type BandwidthInput, type BandwidthKnown, bandwidthPipeline } from "./pipeline.ts"
import { burstBytes, ETHERNET_HEADER, type Limit, tbfFor } from "./tbf.ts"

/** A bucket smaller than one full-size frame would drop every such frame: refused before any change. */
const requireFrameFits = (settings: BandwidthSettings, host: LinkInfo): Effect.Effect<void, CniError> =>
  Effect.gen(function*() {
    const frame = host.mtu + ETHERNET_HEADER
    for (const [name, limit] of [["ingress", settings.ingress], ["egress", settings.egress]] as const) {
      if (limit !== undefined && burstBytes(limit) < frame) {
        return yield* invalidConfig(
          `${settings.source}${name}Burst`,
          `${limit.burst} bits (${burstBytes(limit)} bytes) cannot hold one ${frame}-byte frame of ${host.name} (mtu ${host.mtu}); use at least ${frame * 8}`
        )
      }
    }
  })

const tbfOf = (limit: Limit | undefined) => (limit === undefined ? undefined : tbfFor(limit))

/** The request and its settings as the pipeline's input. */
const pipelineInput = (request: PluginRequest, settings: BandwidthSettings, host: LinkInfo): BandwidthInput => ({
  hostVeth: host.name,
  ifb: {
    name: ifbName(request.env.containerId, request.env.ifname),
    mtu: host.mtu,
    txqlen: host.txqlen,
    alias: ifbAlias(settings.network, request.env.containerId, request.env.ifname)
  },
  ingress: tbfOf(settings.ingress),
  egress: tbfOf(settings.egress)
})

/** prevResult, in the config's version, with the ifb added when egress is shaped (as the reference does). */
const buildResult = (request: PluginRequest, prev: Result, handles: BandwidthHandles): Result => {
  const ifb = handles.ifb
  if (ifb === undefined) return { ...prev, cniVersion: request.conf.cniVersion }
  const others = (prev.interfaces ?? []).filter((i) => i.name !== ifb.name)
  return { ...prev, cniVersion: request.conf.cniVersion, interfaces: [...others, { name: ifb.name, mac: ifb.mac }] }
}

/** What DEL and CHECK know: the ifb's name, the configured limits, the host veth if known. */
const knownOf = (request: PluginRequest, settings: BandwidthSettings, hostVeth: string | undefined): BandwidthKnown => ({
  hostVeth,
  ifb: ifbName(request.env.containerId, request.env.ifname),
  ingress: tbfOf(settings.ingress),
  egress: tbfOf(settings.egress)
})

/**
 * GC: ifb devices of this network (our name prefix, our alias naming the network) whose
 * attachment is not in cni.dev/valid-attachments. The host veths go with the bridge plugin's
 * GC, and their qdiscs with them. Without a valid-attachments list nothing is removed.
 */
const collectGarbage = (request: PluginRequest) =>
  Effect.gen(function*() {
    const valid = validAttachments(request.conf)
    if (valid === undefined) return
    const prefix = ifbAliasPrefix(request.conf.name)
    yield* collectStaleLinks(
      HOST_NETNS,
      (link) => link.kind === "ifb" && link.name.startsWith(IFB_PREFIX) && link.alias?.startsWith(prefix) === true,
      new Set(valid.map((a) => ifbName(a.containerID, a.ifname)))
    )
  })

/**
 * bandwidth: shapes a pod's traffic with token bucket filters on its host veth (ingress, towards
 * the pod) and on an ifb its host veth's received traffic is redirected to (egress). A chained
 * plugin: ADD returns prevResult (plus the ifb); nothing to shape touches nothing. DEL works
 * from derived names, without the netns, twice, or with no ADD; CHECK compares the kernel's
 * qdiscs with the config; GC removes ifbs of attachments the runtime no longer knows.
 */
export const bandwidthPlugin: PluginDefinition<Backend> = {
  name: "bandwidth",
  add: (request) =>
    Effect.gen(function*() {
      const settings = yield* bandwidthSettings(request)
      const prev = request.prevResult
      if (shapesNothing(settings)) return prev ?? { cniVersion: request.conf.cniVersion }
      const host = yield* findHostVeth(request, ifbName(request.env.containerId, request.env.ifname))
      yield* requireFrameFits(settings, host)
      const handles = yield* Pipeline.apply(bandwidthPipeline, pipelineInput(request, settings, host))
      return buildResult(request, prev ?? { cniVersion: request.conf.cniVersion }, handles)
    }),
  check: (request) =>
    Effect.gen(function*() {
      const settings = yield* bandwidthSettings(request)
      if (shapesNothing(settings)) return
      const host = yield* findHostVeth(request, ifbName(request.env.containerId, request.env.ifname))
      yield* Pipeline.runCheck(bandwidthPipeline, knownOf(request, settings, host.name))
    }),
  del: (request) =>
    Effect.gen(function*() {
      const settings = yield* bandwidthSettings(request)
      const hostVeth = yield* guessHostVeth(request, ifbName(request.env.containerId, request.env.ifname))
      yield* Pipeline.runDel(bandwidthPipeline, knownOf(request, settings, hostVeth))
    }),
  gc: (request) => collectGarbage(request),
  // ready when the config would be accepted (there is nothing else to be ready for)
  status: (request) => Effect.asVoid(bandwidthSettings(request))
}
