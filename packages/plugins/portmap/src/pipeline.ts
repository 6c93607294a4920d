import { HOST_NETNS, sysctlKey } from "@tscni/backend"
import { eachOf, Pipeline } from "@tscni/engine"
import { iptablesPodChains, iptablesPodChainsHandle, iptablesPodChainsHandles, nftElements, nftElementsHandle, setSysctl } from "@tscni/steps"
import type { PortmapSettings } from "./config.ts"
import { HOSTPORT_ENTRY, HOSTPORT_MASQ_ENTRY, type hostportChains, portmapElements, portmapPodBatches, portmapTable, udpFlushes } from "./rules.ts"
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
 * What DEL and CHECK know of an attachment: its settings (the mappings the runtime passed,
 * if it did), owner and chains, and the pod's addresses from prevResult (undefined without one).
 */
export interface PortmapKnown {
  readonly settings: PortmapSettings
  readonly owner: string
  readonly chains: ReturnType<typeof hostportChains>
  readonly podIps: ReadonlyArray<string> | undefined
  readonly podAddresses: ReadonlyArray<string> | undefined
}

/** Whether localhost access to host ports is set up (route_localnet on the pod's route): only with snat, and not with masqAll. */
export const routesLocalnet = (settings: PortmapSettings): boolean => settings.snat && !settings.masqAll

/**
 * portmap's ADD: install the DNAT and masquerade rules — in one nftables transaction, or
 * with the iptables backend one iptables-restore per family —, forget stale UDP flows of
 * the new host ports, then let 127.0.0.0/8 be routed to the pod (for localhost access, only
 * with snat).
 *
 * DEL removes the pod's mappings by key when the runtime says which it has (and prevResult
 * its addresses), by owner otherwise (a runtime may omit them on DEL); with iptables, the
 * pod's chains by name. CHECK verifies the mappings.
 */
export const portmapPipeline = Pipeline.make<PortmapInput, PortmapKnown>("portmap")
  .optionalStep("mappings", nftElements, (input) => {
    if (input.settings.backend !== "nftables") return Pipeline.skip
    const elements = portmapElements(input.settings, input.podIps)
    return elements.length > 0 ? { netns: HOST_NETNS, table: portmapTable(input.settings), owner: input.owner, elements } : Pipeline.skip
  }, ({ settings, owner, podIps }, purpose) => {
    if (settings.backend !== "nftables") return Pipeline.skip
    if (purpose === "check") return nftElementsHandle(HOST_NETNS, portmapTable(settings), owner, portmapElements(settings, podIps ?? []))
    const known = settings.mappingsKnown && podIps !== undefined
    if (known && settings.mappings.length === 0) return Pipeline.skip // a pod without hostPorts has nothing here
    return nftElementsHandle(HOST_NETNS, portmapTable(settings), owner, known ? portmapElements(settings, podIps) : undefined)
  })
  .optionalStep("iptablesChains", eachOf(iptablesPodChains), (input) =>
    input.settings.backend === "iptables"
      ? portmapPodBatches(input.settings, input.podAddresses, input.owner, input.chains).map((batch) => ({ netns: HOST_NETNS, batch }))
      : Pipeline.skip, ({ settings, owner, chains, podAddresses }, purpose) => {
    if (settings.backend !== "iptables") return Pipeline.skip
    if (purpose === "check") return portmapPodBatches(settings, podAddresses ?? [], owner, chains).map((batch) => iptablesPodChainsHandle(HOST_NETNS, batch))
    // both families, by name
    const refs = [{ name: chains.dnat, entry: HOSTPORT_ENTRY.name }, { name: chains.masq, entry: HOSTPORT_MASQ_ENTRY.name }]
    return iptablesPodChainsHandles(HOST_NETNS, "nat", owner, refs)
  })
  .step("flushUdp", flushConntrack, (input) => ({
    netns: HOST_NETNS,
    filters: udpFlushes(input.settings.mappings, new Set(input.podIps.map((ip) => (ip.includes(":") ? 6 : 4))))
  }), Pipeline.unlocated)
  // last, and never put back (on rollback as on DEL, as the reference): every pod routed
  // through that interface relies on it from the moment it is on, a concurrent ADD's
  // included; so not verified per pod either
  .step("localnet", eachOf(setSysctl), (input) =>
    routesLocalnet(input.settings)
      ? input.localnetLinks.map((link) => ({
        netns: HOST_NETNS,
        key: sysctlKey("net", "ipv4", "conf", link, "route_localnet"),
        value: "1",
        restoreOnUndo: false
      }))
      : [], Pipeline.unlocated)
