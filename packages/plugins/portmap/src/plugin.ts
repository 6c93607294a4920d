import { Effect } from "effect"
import { Backend, HOST_NETNS } from "@tscni/backend"
import { Pipeline } from "@tscni/engine"
import { contains, parseCidr, parseIp } from "@tscni/ip"
import type { PluginDefinition, PluginRequest } from "@tscni/skel"
import {
  attachmentKey,
  checkOrLegacy,
  collectStaleFilterRules,
  collectStaleIptablesPodChains,
  collectStaleIptablesRules,
  collectStaleNftElements,
  iptablesPodChainsHandle,
  iptablesPodChainsHandles,
  nftElementsHandle,
  removeLegacyFilterRules,
  removeLegacyIptablesRules
} from "@tscni/steps"
import { invalidConfig, podIpConfigs, type Result, validAttachments } from "@tscni/spec"
import { type PortmapSettings, portmapSettings } from "./config.ts"
import { networkTag, ruleOwner } from "./names.ts"
import { type PortmapInput, portmapPipeline, routesLocalnet } from "./pipeline.ts"
import {
  HOSTPORT_ENTRY,
  HOSTPORT_MASQ_ENTRY,
  hostportChains,
  LEGACY_CHAINS,
  LEGACY_TABLES,
  portmapElements,
  portmapPodBatches,
  portmapTable,
  portmapTablePrefix
} from "./rules.ts"

/** The pod's addresses in CIDR form: prevResult IPs on interfaces inside the sandbox (or not tied to one). */
export const podAddresses = (result: Result | undefined): Array<string> => podIpConfigs(result).map((ip) => ip.address)

/** The pod's addresses without prefix. */
export const podIps = (result: Result | undefined): Array<string> => podAddresses(result).map((address) => address.split("/")[0]!)


/** Host interfaces that route to the pod's IPv4 addresses (where route_localnet must be on). */
const routesToPod = (ips: ReadonlyArray<string>) =>
  Effect.gen(function*() {
    const connected = (yield* (yield* Backend).listRoutes(HOST_NETNS))
      .filter((route) => route.link !== undefined && route.gateway === undefined)
      .map((route) => ({ route, cidr: parseCidr(route.dst) }))
    const links = new Set<string>()
    for (const ip of ips) {
      const address = parseIp(ip)
      if (address?.family !== 4) continue
      const best = connected
        .filter((entry) => entry.cidr !== undefined && contains(entry.cidr, address))
        .sort((a, b) => (b.cidr?.prefix ?? 0) - (a.cidr?.prefix ?? 0))[0]
      if (best?.route.link !== undefined) links.add(best.route.link)
    }
    return [...links]
  })

const ownerOf = (request: PluginRequest, settings: PortmapSettings) =>
  ruleOwner(settings.network, request.env.containerId, request.env.ifname)

const chainsOf = (request: PluginRequest) => hostportChains(attachmentKey(request.env.containerId, request.env.ifname))

/** The attachment's iptables chains by name, for DEL (both families). */
const chainRefs = (request: PluginRequest) => {
  const chains = chainsOf(request)
  return [{ name: chains.dnat, entry: HOSTPORT_ENTRY.name }, { name: chains.masq, entry: HOSTPORT_MASQ_ENTRY.name }]
}

/**
 * portmap: hostPort mappings from the `portMappings` capability as elements of the
 * network's nftables hostPort table (or, with `backend: "iptables"`, in chains of the
 * attachment's own), removed exactly by DEL and GC. Without mappings it returns prevResult
 * at once and touches nothing.
 */
export const portmapPlugin: PluginDefinition<Backend> = {
  name: "portmap",
  add: (request) =>
    Effect.gen(function*() {
      const settings = yield* portmapSettings(request)
      const prevResult = request.prevResult ?? { cniVersion: request.conf.cniVersion }
      if (settings.mappings.length === 0) return prevResult
      if (request.prevResult === undefined) return yield* invalidConfig("prevResult", "portmap needs the pod's addresses from a previous plugin")
      const ips = podIps(request.prevResult)
      if (ips.length === 0) return yield* invalidConfig("prevResult.ips", "no address of the pod to map ports to")
      const input: PortmapInput = {
        settings,
        podIps: ips,
        podAddresses: podAddresses(request.prevResult),
        owner: ownerOf(request, settings),
        chains: chainsOf(request),
        // the host's routes are listed only when localhost access is wanted
        localnetLinks: routesLocalnet(settings) ? yield* routesToPod(ips) : []
      }
      yield* Pipeline.apply(portmapPipeline, input)
      return prevResult
    }),
  check: (request) =>
    Effect.gen(function*() {
      const settings = yield* portmapSettings(request)
      if (settings.mappings.length === 0) return
      const owner = ownerOf(request, settings)
      // a pod added before the keyed layout passes with its rules in the old tables or chains
      const legacy = { netns: HOST_NETNS, owner, tables: LEGACY_TABLES, iptables: { table: "nat" as const, chains: LEGACY_CHAINS } }
      if (settings.backend === "iptables") {
        const batches = portmapPodBatches(settings, podAddresses(request.prevResult), owner, chainsOf(request))
        return yield* checkOrLegacy(Pipeline.check(portmapPipeline, { iptablesChains: batches.map((batch) => iptablesPodChainsHandle(HOST_NETNS, batch)) }), legacy)
      }
      const elements = portmapElements(settings, podIps(request.prevResult))
      yield* checkOrLegacy(Pipeline.check(portmapPipeline, { mappings: nftElementsHandle(HOST_NETNS, portmapTable(settings), owner, elements) }), legacy)
    }),
  // By key when the runtime says which mappings the pod has (and prevResult its addresses);
  // found by owner comment otherwise (a runtime may omit them on DEL).
  del: (request) =>
    Effect.gen(function*() {
      const settings = yield* portmapSettings(request)
      const owner = ownerOf(request, settings)
      if (settings.backend === "iptables") {
        yield* Pipeline.undo(portmapPipeline, { iptablesChains: iptablesPodChainsHandles(HOST_NETNS, "nat", owner, chainRefs(request)) })
        yield* removeLegacyIptablesRules(HOST_NETNS, "nat", LEGACY_CHAINS, owner)
        return
      }
      const known = settings.mappingsKnown && request.prevResult !== undefined
      if (known && settings.mappings.length === 0) return // a pod without hostPorts has nothing here
      const elements = known ? portmapElements(settings, podIps(request.prevResult)) : undefined
      yield* Pipeline.undo(portmapPipeline, { mappings: nftElementsHandle(HOST_NETNS, portmapTable(settings), owner, elements) })
      yield* removeLegacyFilterRules(HOST_NETNS, LEGACY_TABLES, owner)
    }),
  gc: (request) =>
    Effect.gen(function*() {
      const settings = yield* portmapSettings(request)
      const valid = validAttachments(request.conf)
      if (valid === undefined) return // no list: nothing can be judged stale
      const tag = networkTag(settings.network)
      if (settings.backend === "iptables") {
        yield* collectStaleIptablesPodChains(HOST_NETNS, "nat", [HOSTPORT_ENTRY.name, HOSTPORT_MASQ_ENTRY.name], tag, valid)
        yield* collectStaleIptablesRules(HOST_NETNS, "nat", LEGACY_CHAINS, tag, valid)
        return
      }
      yield* collectStaleNftElements(HOST_NETNS, portmapTablePrefix(settings.network), tag, valid)
      for (const table of LEGACY_TABLES) yield* collectStaleFilterRules(HOST_NETNS, table, tag, valid)
    })
}
