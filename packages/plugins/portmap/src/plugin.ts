import { Effect } from "effect"
import { Backend, HOST_NETNS } from "@tscni/backend"
import { Pipeline } from "@tscni/engine"
import { parseIp } from "@tscni/ip"
import type { PluginDefinition, PluginRequest } from "@tscni/skel"
import {
  attachmentKey,
  checkOrLegacy,
  collectStaleFilterRules,
  collectStaleIptablesPodChains,
  collectStaleIptablesRules,
  collectStaleNftElements,
  removeLegacyFilterRules,
  removeLegacyIptablesRules
} from "@tscni/steps"
import { invalidConfig, podIpConfigs, type Result, validAttachments } from "@tscni/spec"
import { type PortmapSettings, portmapSettings } from "./config.ts"
import { networkTag, ruleOwner } from "./names.ts"
import { type PortmapInput, type PortmapKnown, portmapPipeline, routesLocalnet } from "./pipeline.ts"
import {
  HOSTPORT_ENTRY,
  HOSTPORT_MASQ_ENTRY,
  hostportChains,
  LEGACY_CHAINS,
  LEGACY_TABLES,
  portmapTablePrefix
} from "./rules.ts"

/** The pod's addresses in CIDR form: prevResult IPs on interfaces inside the sandbox (or not tied to one). */
export const podAddresses = (result: Result | undefined): Array<string> => podIpConfigs(result).map((ip) => ip.address)

/** The pod's addresses without prefix. */
export const podIps = (result: Result | undefined): Array<string> => podAddresses(result).map((address) => address.split("/")[0]!)


/**
 * Host interfaces through which the pod's IPv4 addresses are reached directly (where
 * route_localnet must be on): the kernel's route to each address, one lookup per address,
 * whatever the number of routes and links on the host.
 */
const routesToPod = (ips: ReadonlyArray<string>) =>
  Effect.gen(function*() {
    const backend = yield* Backend
    const links = new Set<string>()
    for (const ip of ips) {
      if (parseIp(ip)?.family !== 4) continue
      const route = yield* backend.lookupRoute(HOST_NETNS, ip)
      if (route?.link !== undefined && route.gateway === undefined) links.add(route.link)
    }
    return [...links]
  })

const ownerOf = (request: PluginRequest, settings: PortmapSettings) =>
  ruleOwner(settings.network, request.env.containerId, request.env.ifname)

const chainsOf = (request: PluginRequest) => hostportChains(attachmentKey(request.env.containerId, request.env.ifname))

/** What DEL and CHECK know of the attachment. */
const knownOf = (request: PluginRequest, settings: PortmapSettings): PortmapKnown => ({
  settings,
  owner: ownerOf(request, settings),
  chains: chainsOf(request),
  podIps: request.prevResult === undefined ? undefined : podIps(request.prevResult),
  podAddresses: request.prevResult === undefined ? undefined : podAddresses(request.prevResult)
})

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
      yield* checkOrLegacy(Pipeline.runCheck(portmapPipeline, knownOf(request, settings)), legacy)
    }),
  del: (request) =>
    Effect.gen(function*() {
      const settings = yield* portmapSettings(request)
      // the runtime says the pod has no hostPorts: its ADD touched nothing, old layout included
      if (settings.mappingsKnown && request.prevResult !== undefined && settings.mappings.length === 0) return
      yield* Pipeline.runDel(portmapPipeline, knownOf(request, settings))
      // what a pod added before the keyed layout has
      const owner = ownerOf(request, settings)
      if (settings.backend === "iptables") yield* removeLegacyIptablesRules(HOST_NETNS, "nat", LEGACY_CHAINS, owner)
      else yield* removeLegacyFilterRules(HOST_NETNS, LEGACY_TABLES, owner)
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
