import { HOST_NETNS, sysctlKey } from "@tscni/backend"
import { eachOf, Pipeline } from "@tscni/engine"
import { iptablesPodChains, nftElements, setSysctl } from "@tscni/steps"
import type { PortmapSettings } from "./config.ts"
import { type hostportChains, portmapElements, portmapPodBatches, portmapTable, udpFlushes } from "./rules.ts"
import { flushConntrack } from "./steps/flushConntrack.ts"

/** One portmap ADD: the mappings, the pod's addresses and what the host looks like. */
export interface PortmapInput {
  readonly settings: PortmapSettings
  readonly podIps: ReadonlyArray<string>
  /** the same addresses in CIDR form, as prevResult has them (the iptables hairpin rule needs the prefix) */
  readonly podAddresses: ReadonlyArray<string>
  readonly owner: string
  /** the attachment's iptables chains (backend iptables) */
  readonly chains: ReturnType<typeof hostportChains>
  /** host interfaces through which the pod's IPv4 addresses are reached (the bridge) */
  readonly localnetLinks: ReadonlyArray<string>
}

/**
 * portmap's ADD: let 127.0.0.0/8 be routed to the pod (for localhost access, only with
 * snat), install the DNAT and masquerade rules — in one nftables transaction, or with the
 * iptables backend one iptables-restore per family —, then forget stale UDP flows of the
 * new host ports.
 */
/** Whether localhost access to host ports is set up (route_localnet on the pod's route): only with snat, and not with masqAll. */
export const routesLocalnet = (settings: PortmapSettings): boolean => settings.snat && !settings.masqAll

export const portmapPipeline = Pipeline.make<PortmapInput>("portmap")
  .step("localnet", eachOf(setSysctl), (input) =>
    routesLocalnet(input.settings)
      ? input.localnetLinks.map((link) => ({ netns: HOST_NETNS, key: sysctlKey("net", "ipv4", "conf", link, "route_localnet"), value: "1" }))
      : [])
  .optionalStep("mappings", nftElements, (input) => {
    if (input.settings.backend !== "nftables") return Pipeline.skip
    const elements = portmapElements(input.settings, input.podIps)
    return elements.length > 0 ? { netns: HOST_NETNS, table: portmapTable(input.settings), owner: input.owner, elements } : Pipeline.skip
  })
  .optionalStep("iptablesChains", eachOf(iptablesPodChains), (input) =>
    input.settings.backend === "iptables"
      ? portmapPodBatches(input.settings, input.podAddresses, input.owner, input.chains).map((batch) => ({ netns: HOST_NETNS, batch }))
      : Pipeline.skip)
  .step("flushUdp", flushConntrack, (input) => ({
    netns: HOST_NETNS,
    filters: udpFlushes(input.settings.mappings, new Set(input.podIps.map((ip) => (ip.includes(":") ? 6 : 4))))
  }))
