import { Effect } from "effect"
import { Backend, HOST_NETNS } from "@tscni/backend"
import { Pipeline } from "@tscni/engine"
import type { PluginDefinition, PluginRequest } from "@tscni/skel"
import { checkOrLegacy, collectStaleFilterRules, collectStaleNftElements, ignoreNotFound, removeLegacyFilterRules } from "@tscni/steps"
import { hostInterfaceNames, invalidConfig, notAvailable, type Result, validAttachments } from "@tscni/spec"
import { type FirewallSettings, firewallSettings } from "./config.ts"
import { firewallTablePrefix, LEGACY_TABLE, networkTag, ruleOwner } from "./names.ts"
import { firewallPipeline } from "./pipeline.ts"
import { firewallTable, podAddresses } from "./rules.ts"

const ownerOf = (request: PluginRequest, settings: FirewallSettings): string =>
  ruleOwner(settings.network, request.env.containerId, request.env.ifname)

/**
 * The pod's bridge for `same-bridge`: of prevResult's host-side interfaces (the bridge and
 * the host veth, for the bridge plugin), the one the kernel says is a bridge.
 */
const bridgeOf = (prev: Result) =>
  Effect.gen(function*() {
    const backend = yield* Backend
    for (const name of hostInterfaceNames(prev)) {
      const link = yield* ignoreNotFound(backend.getLink(HOST_NETNS, name))
      if (link?.kind === "bridge") return name
    }
    return undefined
  })

const findBridge = (prev: Result) =>
  Effect.gen(function*() {
    const bridge = yield* bridgeOf(prev)
    if (bridge !== undefined) return bridge
    const candidates = hostInterfaceNames(prev)
    return yield* invalidConfig(
      "ingressPolicy",
      `same-bridge needs the pod's bridge among prevResult's host interfaces (${candidates.join(", ") || "none"}): chain firewall after bridge`
    )
  })

/**
 * The table the pod's elements are in, as its config and prevResult name it; for
 * `same-bridge` the bridge is part of it (a bridge gone already leaves the table unknown:
 * DEL then finds the pod's elements in any table of the network).
 */
const tableOf = (settings: FirewallSettings, bridge: string | undefined) =>
  firewallTable(settings.network, settings.ingressPolicy, settings.ingressPolicy === "same-bridge" ? bridge ?? "" : undefined)

/** GC: elements of this network whose attachment the runtime no longer knows. */
const collectGarbage = (request: PluginRequest, settings: FirewallSettings) =>
  Effect.gen(function*() {
    const valid = validAttachments(request.conf)
    // Without the runtime's list nothing can be judged stale: remove nothing.
    if (valid === undefined) return
    yield* collectStaleNftElements(HOST_NETNS, firewallTablePrefix(settings.network), networkTag(settings.network), valid)
    yield* collectStaleFilterRules(HOST_NETNS, LEGACY_TABLE, networkTag(settings.network), valid)
  })

/** STATUS: ready when nftables answers (libnftables present, netfilter usable). */
const nftablesReady = Effect.gen(function*() {
  yield* (yield* Backend).listFilterRules(HOST_NETNS, LEGACY_TABLE).pipe(
    Effect.catchIf((error) => error.reason === "Unsupported" || error.reason === "PermissionDenied", (error) =>
      Effect.fail(notAvailable(`firewall: nftables is not usable: ${error.message}`)))
  )
})

/**
 * firewall: lets the pod's traffic through the host's forward hook and applies its ingress
 * policy: the pod's addresses in the network's table of tscni's (its rules are the policy);
 * DEL and GC remove the pod's elements by key or by owner comment, CHECK looks them up.
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
      yield* Pipeline.apply(firewallPipeline, { owner: ownerOf(request, settings), addresses: podAddresses(prev), table: tableOf(settings, bridge) })
      return { ...prev, cniVersion: request.conf.cniVersion }
    }),
  check: (request) =>
    Effect.gen(function*() {
      const settings = yield* firewallSettings(request)
      const prev = request.prevResult
      const addresses = prev === undefined ? [] : podAddresses(prev)
      if (prev === undefined || addresses.length === 0) return
      const bridge = settings.ingressPolicy === "same-bridge" ? yield* findBridge(prev) : undefined
      const owner = ownerOf(request, settings)
      // a pod added before the keyed layout passes with its rules in the old table
      yield* checkOrLegacy(
        Pipeline.runCheck(firewallPipeline, { owner, table: tableOf(settings, bridge), addresses }),
        { netns: HOST_NETNS, owner, tables: [LEGACY_TABLE] }
      )
    }),
  del: (request) =>
    Effect.gen(function*() {
      const settings = yield* firewallSettings(request)
      const prev = request.prevResult
      const owner = ownerOf(request, settings)
      const bridge = prev !== undefined && settings.ingressPolicy === "same-bridge" ? yield* bridgeOf(prev) : undefined
      yield* Pipeline.runDel(firewallPipeline, { owner, table: tableOf(settings, bridge), addresses: prev === undefined ? undefined : podAddresses(prev) })
      yield* removeLegacyFilterRules(HOST_NETNS, [LEGACY_TABLE], owner)
    }),
  gc: (request) => Effect.flatMap(firewallSettings(request), (settings) => collectGarbage(request, settings)),
  status: (request) => Effect.andThen(firewallSettings(request), nftablesReady)
}
