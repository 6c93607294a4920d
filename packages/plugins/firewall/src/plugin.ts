import { Effect } from "effect"
import { Backend, HOST_NETNS } from "@tscni/backend"
import { Pipeline } from "@tscni/engine"
import type { PluginDefinition, PluginRequest } from "@tscni/skel"
import { collectStaleFilterRules, ignoreNotFound } from "@tscni/steps"
import { hostInterfaceNames, invalidConfig, notAvailable, type Result, validAttachments } from "@tscni/spec"
import { type FirewallSettings, firewallSettings } from "./config.ts"
import { FIREWALL_TABLE, networkTag, ruleOwner } from "./names.ts"
import { firewallPipeline } from "./pipeline.ts"
import { podAddresses, ruleSet } from "./rules.ts"

const ownerOf = (request: PluginRequest, settings: FirewallSettings): string =>
  ruleOwner(settings.network, request.env.containerId, request.env.ifname)

/**
 * The pod's bridge for `same-bridge`: of prevResult's host-side interfaces (the bridge and
 * the host veth, for the bridge plugin), the one the kernel says is a bridge.
 */
const findBridge = (prev: Result) =>
  Effect.gen(function*() {
    const backend = yield* Backend
    const candidates = hostInterfaceNames(prev)
    for (const name of candidates) {
      const link = yield* ignoreNotFound(backend.getLink(HOST_NETNS, name))
      if (link?.kind === "bridge") return name
    }
    return yield* invalidConfig(
      "ingressPolicy",
      `same-bridge needs the pod's bridge among prevResult's host interfaces (${candidates.join(", ") || "none"}): chain firewall after bridge`
    )
  })

/** GC: rules of this network whose attachment the runtime no longer knows. */
const collectGarbage = (request: PluginRequest, settings: FirewallSettings) =>
  Effect.gen(function*() {
    const valid = validAttachments(request.conf)
    // Without the runtime's list nothing can be judged stale: remove nothing.
    if (valid === undefined) return
    yield* collectStaleFilterRules(HOST_NETNS, FIREWALL_TABLE, networkTag(settings.network), valid)
  })

/** STATUS: ready when nftables answers (libnftables present, netfilter usable). */
const nftablesReady = Effect.gen(function*() {
  yield* (yield* Backend).listFilterRules(HOST_NETNS, FIREWALL_TABLE).pipe(
    Effect.catchIf((error) => error.reason === "Unsupported" || error.reason === "PermissionDenied", (error) =>
      Effect.fail(notAvailable(`firewall: nftables is not usable: ${error.message}`)))
  )
})

/**
 * firewall: lets the pod's traffic through the host's forward hook and applies its ingress
 * policy, in tscni's own nftables table; DEL and GC remove a pod's rules by their owner
 * comment (prevResult not needed), CHECK finds them again.
 */
export const firewallPlugin: PluginDefinition<Backend> = {
  name: "firewall",
  add: (request) =>
    Effect.gen(function*() {
      const settings = yield* firewallSettings(request)
      const prev = request.prevResult
      if (prev === undefined) {
        return yield* invalidConfig("prevResult", "firewall is a chained plugin and needs the pod's IPs from the previous plugin's result")
      }
      const bridge = settings.ingressPolicy === "same-bridge" ? yield* findBridge(prev) : undefined
      const owner = ownerOf(request, settings)
      const addresses = podAddresses(prev)
      yield* Pipeline.apply(firewallPipeline, { owner, addresses, rules: ruleSet(addresses, settings.ingressPolicy, bridge, owner) })
      return { ...prev, cniVersion: request.conf.cniVersion }
    }),
  check: (request) =>
    Effect.gen(function*() {
      const settings = yield* firewallSettings(request)
      const addresses = request.prevResult === undefined ? [] : podAddresses(request.prevResult)
      if (addresses.length === 0) return
      const owner = ownerOf(request, settings)
      // the bridge's name does not change how many rules each chain holds
      const chains: Record<string, number> = {}
      for (const rule of ruleSet(addresses, settings.ingressPolicy, "", owner)) chains[rule.chain] = (chains[rule.chain] ?? 0) + 1
      yield* Pipeline.check(firewallPipeline, {
        rules: { netns: HOST_NETNS, table: FIREWALL_TABLE, comment: owner, chains, addresses: [...addresses], adopted: false }
      })
    }),
  del: (request) =>
    Effect.gen(function*() {
      const settings = yield* firewallSettings(request)
      yield* Pipeline.undo(firewallPipeline, {
        rules: { netns: HOST_NETNS, table: FIREWALL_TABLE, comment: ownerOf(request, settings), chains: {}, addresses: [], adopted: false }
      })
    }),
  gc: (request) => Effect.flatMap(firewallSettings(request), (settings) => collectGarbage(request, settings)),
  status: (request) => Effect.andThen(firewallSettings(request), nftablesReady)
}
