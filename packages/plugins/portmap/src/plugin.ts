import { Effect } from "effect"
import { Backend, HOST_NETNS } from "@tscni/backend"
import { Pipeline } from "@tscni/engine"
import { contains, parseCidr, parseIp } from "@tscni/ip"
import type { PluginDefinition, PluginRequest } from "@tscni/skel"
import { collectStaleFilterRules, collectStaleIptablesRules, iptablesOwnerHandles, iptablesRulesHandle } from "@tscni/steps"
import { invalidConfig, podIpConfigs, type Result, validAttachments } from "@tscni/spec"
import { type PortmapSettings, portmapSettings } from "./config.ts"
import { networkTag, ruleOwner } from "./names.ts"
import { type PortmapInput, portmapPipeline, routesLocalnet } from "./pipeline.ts"
import { PORTMAP_TABLE, portmapIptablesBatches, portmapRules } from "./rules.ts"

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

/**
 * portmap: hostPort mappings from the `portMappings` capability as nftables DNAT in
 * tscni's own table (or, with `backend: "iptables"`, in tscni's iptables chains), per pod
 * (owner comment), removed exactly by DEL and GC. Without mappings it returns prevResult
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
      if (settings.backend === "iptables") {
        const batches = portmapIptablesBatches(settings, podAddresses(request.prevResult), ownerOf(request, settings))
        return yield* Pipeline.check(portmapPipeline, {
          iptablesRules: batches.map((batch) => iptablesRulesHandle(HOST_NETNS, batch))
        })
      }
      const expected = portmapRules(settings, podIps(request.prevResult), ownerOf(request, settings)).length
      yield* Pipeline.check(portmapPipeline, {
        rules: { netns: HOST_NETNS, table: PORTMAP_TABLE, comment: ownerOf(request, settings), count: expected }
      })
    }),
  // By owner comment: needs neither prevResult nor the mappings (a runtime may omit them on DEL).
  del: (request) =>
    Effect.gen(function*() {
      const settings = yield* portmapSettings(request)
      const owner = ownerOf(request, settings)
      yield* Pipeline.undo(
        portmapPipeline,
        settings.backend === "iptables"
          ? { iptablesRules: iptablesOwnerHandles(HOST_NETNS, "nat", owner) }
          : { rules: { netns: HOST_NETNS, table: PORTMAP_TABLE, comment: owner, count: 0 } }
      )
    }),
  gc: (request) =>
    Effect.gen(function*() {
      const settings = yield* portmapSettings(request)
      const valid = validAttachments(request.conf)
      if (valid === undefined) return // no list: nothing can be judged stale
      const tag = networkTag(settings.network)
      if (settings.backend === "iptables") {
        yield* collectStaleIptablesRules(HOST_NETNS, "nat", tag, valid)
        return
      }
      yield* collectStaleFilterRules(HOST_NETNS, PORTMAP_TABLE, tag, valid)
    })
}
