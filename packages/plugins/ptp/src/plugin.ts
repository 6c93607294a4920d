import { Effect } from "effect"
import { Backend, HOST_NETNS } from "@tscni/backend"
import { CheckFailed, Pipeline } from "@tscni/engine"
import { attachmentOf, type PluginDefinition, type PluginRequest } from "@tscni/skel"
import { attachmentInterface, attachmentResult, type Result, unknownContainer, validAttachments } from "@tscni/spec"
import {
  checkReportedMac,
  collectStaleIptablesPodChains,
  collectStaleHostVeths,
  collectStaleNftElements,
  delegateIpam,
  MASQUERADE_ENTRY,
  masqueradeTablePrefix,
  type PluginExec
} from "@tscni/steps"
import { type PtpSettings, ptpSettings } from "./config.ts"
import { hostVethName, networkTag } from "./names.ts"
import { type PtpHandles, type PtpInput, type PtpKnown, ptpPipeline } from "./pipeline.ts"
import { type PtpPlan, planPtp } from "./plan.ts"

/** The request and its settings as the pipeline's input. */
const pipelineInput = (request: PluginRequest, settings: PtpSettings): PtpInput => ({ settings, ...attachmentOf(request) })

/**
 * The config's `dns` when it says anything, else the IPAM result's: as the reference, which
 * lets IPAM plugins set DNS unless the network config does.
 */
const dnsOf = (request: PluginRequest, ipam: Result): Result["dns"] => {
  const conf = request.conf.dns
  if (conf === undefined || (conf.nameservers === undefined && conf.search === undefined && conf.options === undefined && (conf.domain ?? "") === "")) {
    return ipam.dns
  }
  return {
    ...(conf.nameservers !== undefined ? { nameservers: conf.nameservers } : {}),
    ...(conf.domain !== undefined ? { domain: conf.domain } : {}),
    ...(conf.search !== undefined ? { search: conf.search } : {}),
    ...(conf.options !== undefined ? { options: conf.options } : {})
  }
}

/**
 * The result the reference ptp gives: host veth, then pod interface; every IPAM address on
 * the pod interface (index 1); IPAM's routes as IPAM gave them. Built from handles only:
 * nothing may fail after the pipeline succeeded.
 */
const buildResult = (request: PluginRequest, handles: PtpHandles): Result => {
  const ipam = handles.ipam.result
  const dns = dnsOf(request, ipam)
  return {
    cniVersion: request.conf.cniVersion,
    interfaces: [
      { name: handles.veth.name, mac: handles.veth.mac },
      { name: request.env.ifname, mac: handles.veth.peer.mac, sandbox: request.env.netns }
    ],
    ips: (ipam.ips ?? []).map((ip) => ({ ...ip, interface: 1 })),
    ...(ipam.routes !== undefined ? { routes: ipam.routes } : {}),
    ...(dns !== undefined ? { dns } : {})
  }
}

/** What DEL and CHECK know of the attachment: the request, prevResult and what they give. */
const knownOf = (request: PluginRequest, settings: PtpSettings, plan: PtpPlan | undefined): PtpKnown => ({
  input: pipelineInput(request, settings),
  prevResult: request.prevResult,
  pod: attachmentResult(request.prevResult, request.env.ifname, request.env.netns),
  plan
})

/**
 * CHECK's plan: the pod's addresses and routes, the host end's gateways and routes, as
 * prevResult has them. As in the reference, the pod's namespace must be there (else code 3:
 * the container is gone), and prevResult must name the pod's interface in it.
 */
const planOfPrevResult = (request: PluginRequest) =>
  Effect.gen(function*() {
    const { ifname, netns } = request.env
    if (!(yield* (yield* Backend).netnsExists(netns))) return yield* unknownContainer(`CNI_NETNS ${netns} is not a network namespace`)
    if (attachmentInterface(request.prevResult, ifname, netns) === undefined) {
      return yield* new CheckFailed({ step: "vethPair", message: `prevResult has no interface ${ifname} in ${netns}` })
    }
    return yield* planPtp(attachmentResult(request.prevResult, ifname, netns), { ifname, hostVeth: hostVethName(request.env.containerId, ifname) })
  })

/**
 * GC: host veths of this network (by alias) and masquerade elements or chains (by owner)
 * whose attachment the runtime no longer knows; then the IPAM plugin's GC. Without the
 * runtime's list nothing can be judged stale: nothing is removed.
 */
const collectGarbage = (request: PluginRequest, settings: PtpSettings) =>
  Effect.gen(function*() {
    const valid = validAttachments(request.conf)
    if (valid === undefined) return
    yield* collectStaleHostVeths(HOST_NETNS, settings.network, valid)
    const tag = networkTag(settings.network)
    yield* collectStaleNftElements(HOST_NETNS, masqueradeTablePrefix(settings.network), tag, valid)
    if (settings.ipMasqBackend === "iptables") yield* collectStaleIptablesPodChains(HOST_NETNS, "nat", [MASQUERADE_ENTRY.name], tag, valid)
    yield* delegateIpam("GC", { pluginType: settings.ipamType, config: request.raw, cniPath: request.env.pathRaw, args: request.env.argsRaw })
  })

/**
 * ptp: the pod on a veth of its own, routed by the host (no bridge): its IPs from IPAM, a
 * route to its gateway on the link and its network via the gateway; the gateway on the host
 * end with a host route to each pod address; masquerade, forwarding. DEL from derived names
 * (works without the netns, twice, or with no ADD); CHECK against prevResult; GC of host
 * veths and masquerade of attachments no longer valid.
 */
export const ptpPlugin: PluginDefinition<Backend | PluginExec> = {
  name: "ptp",
  add: (request) =>
    Effect.gen(function*() {
      const settings = yield* ptpSettings(request)
      const handles = yield* Pipeline.apply(ptpPipeline, pipelineInput(request, settings))
      return buildResult(request, handles)
    }),
  check: (request) =>
    Effect.gen(function*() {
      const settings = yield* ptpSettings(request)
      yield* Pipeline.runCheck(ptpPipeline, knownOf(request, settings, yield* planOfPrevResult(request)))
      yield* checkReportedMac(request.env.netns, request.env.ifname, attachmentInterface(request.prevResult, request.env.ifname, request.env.netns)?.mac)
    }),
  del: (request) =>
    Effect.gen(function*() {
      const settings = yield* ptpSettings(request)
      // no plan: DEL removes by name and key (or by owner), and must not fail on a prevResult CHECK would refuse
      yield* Pipeline.runDel(ptpPipeline, knownOf(request, settings, undefined))
    }),
  gc: (request) => Effect.gen(function*() {
    yield* collectGarbage(request, yield* ptpSettings(request))
  }),
  status: (request) =>
    Effect.gen(function*() {
      const settings = yield* ptpSettings(request)
      yield* delegateIpam("STATUS", { pluginType: settings.ipamType, config: request.raw, cniPath: request.env.pathRaw, args: request.env.argsRaw })
    })
}
