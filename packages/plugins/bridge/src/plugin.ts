import { existsSync, rmSync, writeFileSync } from "node:fs"
import { Duration, Effect } from "effect"
import { Backend, HOST_NETNS, isNotFound } from "@tscni/backend"
import { CheckFailed, Pipeline } from "@tscni/engine"
import type { PluginDefinition, PluginRequest } from "@tscni/skel"
import { invalidConfig, ioFailure, type Result, tryAgainLater, validAttachments } from "@tscni/spec"
import {
  checkOrLegacy,
  collectStaleFilterRules,
  collectStaleIptablesPodChains,
  collectStaleIptablesRules,
  collectStaleLinks,
  collectStaleNftElements,
  delegateIpam,
  deleteBridgeIfPortless,
  ignoreNotFound,
  iptablesPodChainsHandle,
  iptablesPodChainsHandles,
  MASQUERADE_ENTRY,
  masqueradeElements,
  masqueradePodBatches,
  masqueradeTable,
  masqueradeTablePrefix,
  nftElementsHandle,
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
  macSpoofElements,
  macSpoofTable,
  macSpoofTablePrefix,
  masqueradeChainOf,
  networkTag,
  ruleOwner,
  vethAliasPrefix
} from "./names.ts"
import { arpNotifyKey, BRIDGE_NF, type BridgeInput, bridgePipeline, ipamRequest } from "./pipeline.ts"
import { planAddresses } from "./plan.ts"

type BridgeHandles = typeof bridgePipeline extends Pipeline.Pipeline<BridgeInput, infer H, infer _E, infer _R> ? H : never



/** The request and its settings as the pipeline's input. */
const pipelineInput = (request: PluginRequest, settings: BridgeSettings, hostSysctls: ReadonlySet<string>): BridgeInput => ({
  settings,
  containerId: request.env.containerId,
  netns: request.env.netns,
  ifname: request.env.ifname,
  args: request.env.argsRaw,
  cniPath: request.env.pathRaw,
  cniVersion: request.conf.cniVersion,
  rawConfig: request.raw,
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

/** The IPAM delegation as ADD made it (same config and request), for DEL and CHECK to repeat. */
const ipamHandle = (request: PluginRequest, settings: BridgeSettings, result: Result): Partial<BridgeHandles> => {
  const ipam = ipamRequest(pipelineInput(request, settings, new Set()))
  return ipam === undefined ? {} : { ipam: { ...ipam, result } }
}

/** The pod interface as prevResult reports it (its MAC is what the spoof check allows). */
const reportedInterface = (request: PluginRequest) =>
  request.prevResult?.interfaces?.find((i) => i.name === request.env.ifname && i.sandbox === request.env.netns)

/**
 * The pod's packet-filter handles: its masquerade and MAC spoof elements by key (from
 * prevResult; found by owner when there is none), or its iptables masquerade chains.
 */
const filterHandles = (request: PluginRequest, settings: BridgeSettings, addresses: ReadonlyArray<string> | undefined): Partial<BridgeHandles> => {
  const { containerId, ifname } = request.env
  const owner = ruleOwner(settings.network, containerId, ifname)
  const mac = reportedInterface(request)?.mac
  const macSpoofCheck = nftElementsHandle(
    HOST_NETNS,
    macSpoofTable(settings.network),
    owner,
    mac === undefined ? undefined : macSpoofElements(hostVethName(containerId, ifname), mac)
  )
  if (settings.ipMasqBackend === "iptables") {
    // chains of both families by name: a family ADD had no address of holds none (and a
    // host without ip6tables none either); nftables only for the MAC spoof check it uses
    const chains = [{ name: masqueradeChainOf(containerId, ifname), entry: MASQUERADE_ENTRY.name }]
    return { iptablesMasquerade: iptablesPodChainsHandles(HOST_NETNS, "nat", owner, chains), ...(settings.macspoofchk ? { macSpoofCheck } : {}) }
  }
  const masquerade = nftElementsHandle(HOST_NETNS, masqueradeTable(settings.network), owner, addresses === undefined ? undefined : masqueradeElements(addresses))
  return { masquerade, macSpoofCheck }
}

/**
 * The handles DEL undoes, rebuilt from names derived from the attachment, the config and
 * prevResult: the host veth (its peer goes with it), the IP (IPAM DEL), the masquerade and
 * MAC spoof elements. Shared things (bridge, gateway address, host sysctls) are not the
 * pod's to undo.
 */
const handlesForDel = (request: PluginRequest, settings: BridgeSettings): Partial<BridgeHandles> => {
  const { containerId, netns, ifname } = request.env
  const pod = podResult(request)
  const rules = filterHandles(request, settings, pod === undefined ? undefined : (pod.ips ?? []).map((ip) => ip.address))
  return {
    veth: {
      netns: HOST_NETNS,
      name: hostVethName(containerId, ifname),
      index: 0,
      mac: "",
      peer: { netns: netns === "" ? "/nonexistent" : netns, name: ifname, index: 0, mac: "" }
    },
    ...rules,
    ...ipamHandle(request, settings, request.prevResult ?? { cniVersion: request.conf.cniVersion })
  }
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
 */
const removeBridgeIfUnused = (settings: BridgeSettings) =>
  withBridgeLock(settings.bridge, "exclusive", Effect.gen(function*() {
    // holding the lock exclusively, no ADD is running: an intent file is a killed ADD's
    const intent = bridgeIntentPath(settings.bridge)
    const killedWhileCreating = existsSync(intent)
    yield* deleteBridgeIfPortless(
      HOST_NETNS,
      settings.bridge,
      (bridge) => bridge.alias === bridgeAlias(settings.network) || (killedWhileCreating && bridge.alias === undefined)
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
const podResult = (request: PluginRequest): Result | undefined => {
  const prev = request.prevResult
  if (prev === undefined) return undefined
  const index = (prev.interfaces ?? []).findIndex((i) => i.name === request.env.ifname && i.sandbox === request.env.netns)
  return { ...prev, ips: (prev.ips ?? []).filter((ip) => ip.interface === undefined || ip.interface === index) }
}

/** The handles CHECK verifies: what ADD promised, rebuilt from prevResult and the config. */
const handlesForCheck = (request: PluginRequest, settings: BridgeSettings) =>
  Effect.gen(function*() {
    const result = podResult(request)
    const plan = yield* planAddresses(result, {
      ifname: request.env.ifname,
      isGateway: settings.isGateway,
      isDefaultGateway: false // the default routes are in prevResult's routes already
    })
    const { containerId, netns, ifname } = request.env
    const hostVeth = hostVethName(containerId, ifname)
    const owner = ruleOwner(settings.network, containerId, ifname)
    const masquerade = settings.ipMasq && plan.addresses.length > 0
    const handles: Partial<BridgeHandles> = {
      bridge: { netns: HOST_NETNS, name: settings.bridge, index: 0, mac: "", created: false },
      veth: { netns: HOST_NETNS, name: hostVeth, index: 0, mac: "", peer: { netns, name: ifname, index: 0, mac: "" } },
      port: { netns: HOST_NETNS, link: hostVeth, bridge: settings.bridge, hairpin: settings.hairpinMode, isolated: settings.portIsolation },
      hostUp: { netns: HOST_NETNS, link: hostVeth, wasUp: false },
      addresses: plan.addresses.map((cidr) => ({ netns, link: ifname, cidr, created: true })),
      ...(plan.addresses.length > 0 ? { arpNotify: { netns, key: arpNotifyKey(ifname), value: "1", previous: "0", restoreOnUndo: true } } : {}),
      routes: plan.routes.map((route) => ({ netns, route })),
      gateways: plan.gateways.map((cidr) => ({ netns: HOST_NETNS, bridge: settings.bridge, cidr, created: false, replaced: [] })),
      ...(settings.disableContainerInterface ? {} : { podUp: { netns, link: ifname, wasUp: false } }),
      ...(masquerade && settings.ipMasqBackend === "nftables"
        ? { masquerade: nftElementsHandle(HOST_NETNS, masqueradeTable(settings.network), owner, masqueradeElements(plan.addresses)) }
        : {}),
      ...(masquerade && settings.ipMasqBackend === "iptables"
        ? {
          iptablesMasquerade: masqueradePodBatches(plan.addresses, owner, masqueradeChainOf(containerId, ifname)).map((batch) =>
            iptablesPodChainsHandle(HOST_NETNS, batch)
          )
        }
        : {}),
      ...(settings.macspoofchk
        ? {
          macSpoofCheck: nftElementsHandle(HOST_NETNS, macSpoofTable(settings.network), owner, macSpoofElements(hostVeth, reportedInterface(request)?.mac))
        }
        : {}),
      ...(settings.vlan !== undefined
        ? { vlan: { netns: HOST_NETNS, link: hostVeth, vid: settings.vlan, removedDefault: false } }
        : {}),
      ...(result !== undefined ? ipamHandle(request, settings, result) : {})
    }
    return handles
  })

/** The pod interface still has the MAC prevResult reported. */
const checkMac = (request: PluginRequest) =>
  Effect.gen(function*() {
    const reported = request.prevResult?.interfaces?.find((i) => i.name === request.env.ifname && i.sandbox === request.env.netns)
    if (reported?.mac === undefined) return
    const link = yield* (yield* Backend).getLink(request.env.netns, request.env.ifname)
    if (link.mac.toLowerCase() !== reported.mac.toLowerCase()) {
      return yield* new CheckFailed({ step: "vethPair", message: `${request.env.ifname} has MAC ${link.mac}, prevResult says ${reported.mac}` })
    }
  })

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
    const aliasPrefix = vethAliasPrefix(settings.network)
    yield* collectStaleLinks(
      HOST_NETNS,
      (link) => link.kind === "veth" && link.alias?.startsWith(aliasPrefix) === true,
      new Set(valid.map((a) => hostVethName(a.containerID, a.ifname)))
    )
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
      yield* checkOrLegacy(Pipeline.check(bridgePipeline, yield* handlesForCheck(request, settings)), {
        netns: HOST_NETNS,
        owner: ruleOwner(settings.network, request.env.containerId, request.env.ifname),
        tables: LEGACY_TABLES,
        iptables: { table: "nat", chains: [LEGACY_MASQ_CHAIN] }
      })
      yield* checkMac(request)
    }),
  del: (request) =>
    Effect.gen(function*() {
      const settings = yield* bridgeSettings(request)
      yield* Pipeline.undo(bridgePipeline, handlesForDel(request, settings))
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
