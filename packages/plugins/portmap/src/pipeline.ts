import { HOST_NETNS } from "@tscni/backend"
import { eachOf, Pipeline } from "@tscni/engine"
import { addFilterRules, setSysctl } from "@tscni/steps"
import type { PortmapSettings } from "./config.ts"
import { portmapRules, udpFlushes } from "./rules.ts"
import { flushConntrack } from "./steps/flushConntrack.ts"

/** One portmap ADD: the mappings, the pod's addresses and what the host looks like. */
export interface PortmapInput {
  readonly settings: PortmapSettings
  readonly podIps: ReadonlyArray<string>
  readonly owner: string
  /** host interfaces through which the pod's IPv4 addresses are reached (the bridge) */
  readonly localnetLinks: ReadonlyArray<string>
}

/**
 * portmap's ADD: let 127.0.0.0/8 be routed to the pod (for localhost access, only with
 * snat), install the DNAT and masquerade rules in one transaction, then forget stale UDP
 * flows of the new host ports.
 */
export const portmapPipeline = Pipeline.make<PortmapInput>("portmap")
  .step("localnet", eachOf(setSysctl), (input) =>
    input.settings.snat && !input.settings.masqAll
      ? input.localnetLinks.map((link) => ({ netns: HOST_NETNS, key: `net.ipv4.conf.${link}.route_localnet`, value: "1" }))
      : [])
  .optionalStep("rules", addFilterRules, (input) => {
    const rules = portmapRules(input.settings, input.podIps, input.owner)
    return rules.length > 0 ? { netns: HOST_NETNS, rules } : Pipeline.skip
  })
  .step("flushUdp", flushConntrack, (input) => ({
    netns: HOST_NETNS,
    filters: udpFlushes(input.settings.mappings, new Set(input.podIps.map((ip) => (ip.includes(":") ? 6 : 4))))
  }))
