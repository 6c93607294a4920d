import { existsSync, rmSync, writeFileSync } from "node:fs"
import { Duration, Effect } from "effect"
import { Backend, HOST_NETNS, isNotFound } from "@tscni/backend"
import { Pipeline } from "@tscni/engine"
import { attachmentOf, type PluginDefinition, type PluginRequest } from "@tscni/skel"
import { attachmentInterface, attachmentResult, invalidConfig, ioFailure, type Result, tryAgainLater, validAttachments } from "@tscni/spec"
import {
  checkOrLegacy,
  checkReportedMac,
  collectStaleFilterRules,
  collectStaleIptablesPodChains,
  collectStaleIptablesRules,
  collectStaleHostVeths,
  collectStaleNftElements,
  delegateIpam,
  deleteBridgeIfPortless,
  ignoreNotFound,
  MASQUERADE_ENTRY,
  masqueradeTablePrefix,
  type PluginExec,
  removeLegacyFilterRules,
  removeLegacyIptablesRules,
  withFileLock
} from "@tscni/steps"
import { type BridgeSettings, bridgeSettings } from "./config.ts"
import {
  bridgeAlias,
  bridgeIntentPath,
  bridgeLockPath,
  hostVethName,
  LEGACY_MASQ_CHAIN,
  LEGACY_TABLES,
  macSpoofTablePrefix,
  networkTag,
  ruleOwner
} from "./names.ts"
import { BRIDGE_NF, type BridgeHandles, type BridgeInput, type BridgeKnown, bridgePipeline } from "./pipeline.ts"
import { type AddressPlan, planAddresses } from "./plan.ts"

/** The request and its settings as the pipeline's input. */
const pipelineInput = (request: PluginRequest, settings: BridgeSettings, hostSysctls: ReadonlySet<string>): BridgeInput => ({
  settings,
  ...attachmentOf(request),
  hostSysctls
})

/** Which of the bridge-netfilter switches exist on this host (they need br_netfilter). */
const presentHostSysctls = Effect.gen(function*() {
  const backend = yield* Backend
  const present = new Set<string>()
  for (const key of BRIDGE_NF) {
    // absent (br_netfilter not loaded) is skipped; any other failure to read it fails the ADD,
    // which would otherwise go on without the switch kube-proxy relies on
    const found = yield* backend.readSysctl(HOST_NETNS, key).pipe(Effect.as(true), Effect.catchIf(isNotFound, () => Effect.succeed(false)))
    if (found) present.add(key)
  }
  return present
})

/**
 * The result the reference bridge gives: bridge, host veth, pod interface; the pod's IPs on
 * the last. Built from handles only: nothing may fail after the pipeline succeeded.
 */
const buildResult = (request: PluginRequest, settings: BridgeSettings, handles: BridgeHandles): Result => {
    const ipamResult = handles.ipam?.result
    const gatewayOf = new Map((ipamResult?.ips ?? []).map((ip) => [ip.address, ip.gateway]))
    const dns = request.conf.dns ?? ipamResult?.dns
    const result: Result = {
      cniVersion: request.conf.cniVersion,
      interfaces: [
        { name: settings.bridge, mac: handles.bridge.mac },
        { name: handles.veth.name, mac: handles.veth.mac },
        { name: request.env.ifname, mac: handles.veth.peer.mac, sandbox: request.env.netns }
      ],
      ips: handles.plan.addresses.map((address) => {
        const gateway = gatewayOf.get(address)
        return { address, interface: 2, ...(gateway !== undefined ? { gateway } : {}) }
      }),
      routes: handles.plan.resultRoutes,
      ...(dns !== undefined ? { dns } : {})
    }
    return result
}

/** A pod added before the keyed layout: its rules are found by owner comment in the old tables and chain. */
const removeLegacyRules = (request: PluginRequest, settings: BridgeSettings) =>
  Effect.gen(function*() {
    const owner = ruleOwner(settings.network, request.env.containerId, request.env.ifname)
    yield* removeLegacyFilterRules(HOST_NETNS, LEGACY_TABLES, owner)
    if (settings.ipMasqBackend === "iptables") yield* removeLegacyIptablesRules(HOST_NETNS, "nat", [LEGACY_MASQ_CHAIN], owner)
  })

/** A file operation on the lock dir as an Effect: its failure is the call's I/O error, never a defect. */
const lockDirIo = (what: string, run: () => void) =>
  Effect.try({ try: run, catch: (error) => ioFailure(`bridge: ${what}`, error instanceof Error ? error.message : String(error)) })

/**
 * Removes an intent file, whatever happens: it runs after ADD committed or rolled back, so
 * it must not fail the call (a leftover file only makes a later last-pod DEL also accept an
 * unmarked bridge of that name as ours, which the intent file said it was).
 */
const dropIntent = (intent: string) =>
  lockDirIo(`removing ${intent}`, () => rmSync(intent, { force: true })).pipe(
    Effect.catchTag("CniError", (error) => Effect.logWarning(`${error.msg}: ${error.details ?? ""} (left; harmless)`))
  )

/** Runs `effect` holding the bridge's lock; a lock that cannot be had is "try again later". */
const withBridgeLock = <A, E, R>(bridge: string, mode: "shared" | "exclusive", effect: Effect.Effect<A, E, R>) =>
  withFileLock(bridgeLockPath(bridge), effect, (failure) => tryAgainLater(`bridge ${bridge}: ${failure.message}`), Duration.seconds(30), mode)

/**
 * A bridge tscni created (it carries our alias) is removed once no port is left on it, so
 * the last pod's DEL leaves the host as it was; a bridge someone else made is never touched.
 * With `lastPort` (a pod's DEL, before its pipeline's undo) a bridge whose only port is
 * that pod's veth is removed with it, in one kernel batch. A bridge that still has other
 * ports (every DEL but a network's last) is seen without the lock: the exclusive lock, which
 * waits for running ADDs and makes DELs wait for each other, is taken only to remove one,
 * and the ports are looked at again under it.
 */
const removeBridgeIfUnused = (settings: BridgeSettings, lastPort?: string) =>
  Effect.gen(function*() {
    const ports = yield* ignoreNotFound(Backend.use((backend) => backend.listBridgePorts(HOST_NETNS, settings.bridge)))
    if (ports !== undefined && ports.some((port) => port.name !== lastPort)) return
    // no bridge: only a killed ADD's intent file may be left to remove
    if (ports === undefined && !existsSync(bridgeIntentPath(settings.bridge))) return
    yield* removeBridgeIfPortless(settings, lastPort)
  })

const removeBridgeIfPortless = (settings: BridgeSettings, lastPort?: string) =>
  withBridgeLock(settings.bridge, "exclusive", Effect.gen(function*() {
    // holding the lock exclusively, no ADD is running: an intent file is a killed ADD's
    const intent = bridgeIntentPath(settings.bridge)
    const killedWhileCreating = existsSync(intent)
    yield* deleteBridgeIfPortless(
      HOST_NETNS,
      settings.bridge,
      (bridge) => bridge.alias === bridgeAlias(settings.network) || (killedWhileCreating && bridge.alias === undefined),
      lastPort
    )
    if (killedWhileCreating) yield* dropIntent(intent)
  }))

/**
 * ADD's part: with the bridge's lock held shared, leaves the intent file while a bridge
 * that did not exist may be created, and removes it when ADD ends (success or not).
 */
const plugIn = <A, E, R>(settings: BridgeSettings, apply: Effect.Effect<A, E, R>) =>
  withBridgeLock(settings.bridge, "shared", Effect.gen(function*() {
    // only "not found" means absent: any other failure fails ADD before anything is made
    const bridge = yield* ignoreNotFound(Backend.use((backend) => backend.getLink(HOST_NETNS, settings.bridge)))
    if (bridge !== undefined && bridge.kind !== "bridge") {
      return yield* invalidConfig("bridge", `${settings.bridge} exists and is a ${bridge.kind} link, not a bridge`)
    }
    if (bridge !== undefined) return yield* apply
    const intent = bridgeIntentPath(settings.bridge)
    yield* lockDirIo(`writing ${intent}`, () => writeFileSync(intent, settings.network))
    return yield* apply.pipe(Effect.ensuring(dropIntent(intent)))
  }))

/** The pod's part of prevResult: its interface's IPs (a chain's result may hold others). */
const podResult = (request: PluginRequest): Result | undefined => attachmentResult(request.prevResult, request.env.ifname, request.env.netns)

/** The pod interface as prevResult reports it (its MAC is what the spoof check allows). */
const reportedInterface = (request: PluginRequest) => attachmentInterface(request.prevResult, request.env.ifname, request.env.netns)

/** What DEL and CHECK know of the attachment: the request, prevResult and what they give. */
const knownOf = (request: PluginRequest, settings: BridgeSettings, plan: AddressPlan | undefined, hostSysctls: ReadonlySet<string>): BridgeKnown => ({
  input: pipelineInput(request, settings, hostSysctls),
  prevResult: request.prevResult,
  pod: podResult(request),
  plan,
  podMac: reportedInterface(request)?.mac
})

/** CHECK's plan: the pod's addresses, routes and gateways as prevResult has them (its default routes included). */
const planOfPrevResult = (request: PluginRequest, settings: BridgeSettings) =>
  planAddresses(podResult(request), { ifname: request.env.ifname, isGateway: settings.isGateway, isDefaultGateway: false })

/**
 * GC: host veths and rules of this network whose attachment the runtime no longer knows.
 * A veth is found by its alias, attached or not (an ADD killed before attachToBridge leaves
 * an unattached one); rules by their owner comment.
 */
const collectGarbage = (request: PluginRequest, settings: BridgeSettings) =>
  Effect.gen(function*() {
    // Without the runtime's list nothing can be judged stale: remove nothing.
    const valid = validAttachments(request.conf)
    if (valid === undefined) return
    yield* collectStaleHostVeths(HOST_NETNS, settings.network, valid)
    const tag = networkTag(settings.network)
    for (const prefix of [masqueradeTablePrefix(settings.network), macSpoofTablePrefix(settings.network)]) {
      yield* collectStaleNftElements(HOST_NETNS, prefix, tag, valid)
    }
    if (settings.ipMasqBackend === "iptables") yield* collectStaleIptablesPodChains(HOST_NETNS, "nat", [MASQUERADE_ENTRY.name], tag, valid)
    // what pods added before the keyed layout left
    for (const table of LEGACY_TABLES) yield* collectStaleFilterRules(HOST_NETNS, table, tag, valid)
    if (settings.ipMasqBackend === "iptables") yield* collectStaleIptablesRules(HOST_NETNS, "nat", [LEGACY_MASQ_CHAIN], tag, valid)
    if (settings.ipamType !== undefined) {
      yield* delegateIpam("GC", { pluginType: settings.ipamType, config: request.raw, cniPath: request.env.pathRaw, args: request.env.argsRaw })
    }
    yield* removeBridgeIfUnused(settings)
  })

/**
 * bridge: the pod's veth on a host bridge, its IPs from IPAM, routes, gateway and
 * masquerade; DEL from derived names (works without the netns, twice, or with no ADD);
 * CHECK against prevResult; GC of host veths and rules of attachments no longer valid.
 */
export const bridgePlugin: PluginDefinition<Backend | PluginExec> = {
  name: "bridge",
  cniArgs: ["MAC"],
  add: (request) =>
    Effect.gen(function*() {
      const settings = yield* bridgeSettings(request)
      const input = pipelineInput(request, settings, yield* presentHostSysctls)
      // shared: ADDs run side by side, but no DEL removes the bridge under them
      const handles = yield* plugIn(settings, Pipeline.apply(bridgePipeline, input))
      return buildResult(request, settings, handles)
    }),
  check: (request) =>
    Effect.gen(function*() {
      const settings = yield* bridgeSettings(request)
      const known = knownOf(request, settings, yield* planOfPrevResult(request, settings), yield* presentHostSysctls)
      yield* checkOrLegacy(Pipeline.runCheck(bridgePipeline, known), {
        netns: HOST_NETNS,
        owner: ruleOwner(settings.network, request.env.containerId, request.env.ifname),
        tables: LEGACY_TABLES,
        iptables: { table: "nat", chains: [LEGACY_MASQ_CHAIN] }
      })
      yield* checkReportedMac(request.env.netns, request.env.ifname, reportedInterface(request)?.mac)
    }),
  del: (request) =>
    Effect.gen(function*() {
      const settings = yield* bridgeSettings(request)
      // no plan: DEL needs none (it removes by name and key, or by owner), and must not fail on a prevResult CHECK would refuse
      // the network's last pod: its veth goes with the bridge, one unregister instead of two
      // (10–20 ms, docs/bench/README.md). Only a shortcut: a failure (the lock not had in
      // time, a refused batch) is logged, and what follows removes them one by one.
      const hostVeth = hostVethName(request.env.containerId, request.env.ifname)
      yield* removeBridgeIfUnused(settings, hostVeth).pipe(
        Effect.catch((error) => Effect.logWarning(`removing ${hostVeth} with bridge ${settings.bridge}: ${error.message} (left to the one-by-one path)`))
      )
      yield* Pipeline.runDel(bridgePipeline, knownOf(request, settings, undefined, new Set()))
      yield* removeLegacyRules(request, settings)
      yield* removeBridgeIfUnused(settings)
    }),
  gc: (request) => Effect.gen(function*() {
    yield* collectGarbage(request, yield* bridgeSettings(request))
  }),
  status: (request) =>
    Effect.gen(function*() {
      const settings = yield* bridgeSettings(request)
      if (settings.ipamType === undefined) return
      yield* delegateIpam("STATUS", { pluginType: settings.ipamType, config: request.raw, cniPath: request.env.pathRaw, args: request.env.argsRaw })
    })
}
