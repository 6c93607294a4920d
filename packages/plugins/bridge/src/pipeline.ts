import { HOST_NETNS, sysctlKey } from "@tscni/backend"
import { derive, eachOf, Pipeline } from "@tscni/engine"
import type { Result } from "@tscni/spec"
import {
  addAddress,
  addRoute,
  attachToBridge,
  ensureBridge,
  ipamAllocate,
  type IpamAllocateInput,
  iptablesPodChains,
  iptablesPodChainsHandle,
  iptablesPodChainsHandles,
  linkUp,
  MASQUERADE_ENTRY,
  masqueradeElements,
  masqueradePodBatches,
  masqueradeTable,
  nftElements,
  nftElementsHandle,
  setLinkOptions,
  setSysctl,
  vethPair
} from "@tscni/steps"
import type { BridgeSettings } from "./config.ts"
import { bridgeAlias, hostVethName, macSpoofElements, macSpoofTable, masqueradeChainOf, ruleOwner, vethAlias } from "./names.ts"
import { AddressPlan, planAddresses } from "./plan.ts"
import { gatewayAddress } from "./steps/gatewayAddress.ts"
import { portVlan } from "./steps/portVlan.ts"

/** One bridge ADD: the decided settings and the request they apply to. */
export interface BridgeInput {
  readonly settings: BridgeSettings
  readonly containerId: string
  readonly netns: string
  readonly ifname: string
  /** CNI_ARGS and CNI_PATH, passed to the IPAM plugin unchanged */
  readonly args: string
  readonly cniPath: string
  readonly cniVersion: string
  /** the network config as received, what the IPAM plugin gets on stdin */
  readonly rawConfig: Readonly<Record<string, unknown>>
  /** which host sysctls exist here (br_netfilter may not be loaded) */
  readonly hostSysctls: ReadonlySet<string>
}

/**
 * What DEL and CHECK know of a bridge attachment without ADD's memory: the request and
 * config as ADD's input, prevResult, and what the plugin worked out or looked up from them.
 */
export interface BridgeKnown {
  readonly input: BridgeInput
  /** prevResult as the runtime passed it (the IPAM plugin's DEL gets it) */
  readonly prevResult: Result | undefined
  /** this pod's part of prevResult: its interface's IPs (a chain's result may hold others) */
  readonly pod: Result | undefined
  /** addresses, routes and gateways worked out from `pod` (its default routes are in it already); none when it could not be */
  readonly plan: AddressPlan | undefined
  /** the pod interface's MAC as prevResult reports it (what the MAC spoof check allows) */
  readonly podMac: string | undefined
}

/** The IPAM delegation of this request (same config, same env), or none without IPAM; DEL and CHECK repeat it. */
export const ipamRequest = (input: BridgeInput): IpamAllocateInput | undefined =>
  input.settings.ipamType === undefined ? undefined : {
    pluginType: input.settings.ipamType,
    config: input.rawConfig,
    cniVersion: input.cniVersion,
    containerId: input.containerId,
    netns: input.netns,
    ifname: input.ifname,
    args: input.args,
    cniPath: input.cniPath
  }

const skipUnless = <A>(condition: boolean, value: () => A): A | Pipeline.Skip => (condition ? value() : Pipeline.skip)

const ipamResult = (handles: { readonly ipam?: { readonly result: Result } }): Result | undefined => handles.ipam?.result

/** Works out addresses, routes and gateways from the IPAM result; an unusable result fails here. */
const planStep = derive("planAddresses", AddressPlan, (input: { readonly bridge: BridgeInput; readonly result: Result | undefined }) =>
  planAddresses(input.result, {
    ifname: input.bridge.ifname,
    isGateway: input.bridge.settings.isGateway,
    isDefaultGateway: input.bridge.settings.isDefaultGateway
  }))

const hasIpv6 = (result: Result | undefined): boolean => (result?.ips ?? []).some((ip) => ip.address.includes(":"))

/** The pod interface's arp_notify switch. */
export const arpNotifyKey = (ifname: string): string => sysctlKey("net", "ipv4", "conf", ifname, "arp_notify")

/** Host sysctls a gateway needs; set only when present here (bridge-nf needs br_netfilter). */
export const BRIDGE_NF = ["net.bridge.bridge-nf-call-iptables", "net.bridge.bridge-nf-call-ip6tables"]

const hasIpv4 = (addresses: ReadonlyArray<string>): boolean => addresses.some((address) => !address.includes(":"))
const hasIpv6Address = (addresses: ReadonlyArray<string>): boolean => addresses.some((address) => address.includes(":"))

/**
 * Host-wide switches (forwarding, bridge-nf) are set and never put back, on rollback as on
 * DEL, as the reference plugin does: a concurrent first ADD of another pod, and kube-proxy,
 * rely on them from the moment they are on; putting back what one failed ADD found would
 * switch them off under those. They are the last steps, so every failure before them
 * leaves them untouched.
 */
const hostSwitch = (key: string) => ({ netns: HOST_NETNS, key, value: "1", restoreOnUndo: false })
/** A host switch as CHECK verifies it (the value it had before ADD is not known, nor needed). */
const hostSwitchHandle = (key: string) => ({ ...hostSwitch(key), previous: "" })

const owner = (input: BridgeInput): string => ruleOwner(input.settings.network, input.containerId, input.ifname)
const hostVeth = (input: BridgeInput): string => hostVethName(input.containerId, input.ifname)
const plannedAddresses = (known: BridgeKnown): ReadonlyArray<string> => known.plan?.addresses ?? []
const masquerades = (input: BridgeInput, backend: "nftables" | "iptables", addresses: ReadonlyArray<string>): boolean =>
  input.settings.ipMasq && input.settings.ipMasqBackend === backend && addresses.length > 0

/**
 * The bridge plugin's ADD, in the reference plugin's order: bridge, veth pair, port, IPAM,
 * the pod's addresses and routes, the gateway on the bridge, masquerade, the host switches
 * (promiscuous bridge, forwarding, bridge-nf). Every
 * step is undone in reverse if a later one fails, the IP released included.
 *
 * Each step also says how DEL and CHECK find it again (`locate`): DEL undoes the pod's own
 * things — its veth (the pod's addresses, routes and sysctls go with it), its IP, its
 * masquerade and MAC spoof elements — and leaves what pods share (bridge, gateway address,
 * host switches); CHECK verifies everything ADD promised.
 */
export const bridgePipeline = Pipeline.make<BridgeInput, BridgeKnown>("bridge")
  .step("bridge", ensureBridge, (input) => ({
    netns: HOST_NETNS,
    name: input.settings.bridge,
    alias: bridgeAlias(input.settings.network),
    ...(input.settings.vlan !== undefined ? { vlanFiltering: true } : {}),
    ...(input.settings.mtu !== undefined ? { mtu: input.settings.mtu } : {})
  }), Pipeline.checkOnly(({ input }) => ({ netns: HOST_NETNS, name: input.settings.bridge, index: 0, mac: "", created: false })))
  .step("veth", vethPair, (input) => ({
    netns: HOST_NETNS,
    name: hostVeth(input),
    peerNetns: input.netns,
    peerName: input.ifname,
    alias: vethAlias(input.settings.network, input.containerId, input.ifname),
    ...(input.settings.mtu !== undefined ? { mtu: input.settings.mtu } : {}),
    ...(input.settings.mac !== undefined ? { peerMac: input.settings.mac } : {})
  }), ({ input }) => ({
    // by name: undo deletes the host end (the pod's end goes with it), check finds both
    netns: HOST_NETNS,
    name: hostVeth(input),
    index: 0,
    mac: "",
    peer: { netns: input.netns === "" ? "/nonexistent" : input.netns, name: input.ifname, index: 0, mac: "" }
  }))
  .step("port", attachToBridge, (input) => ({
    netns: HOST_NETNS,
    link: hostVeth(input),
    bridge: input.settings.bridge,
    hairpin: input.settings.hairpinMode,
    isolated: input.settings.portIsolation
  }), Pipeline.checkOnly(({ input }) => ({
    netns: HOST_NETNS,
    link: hostVeth(input),
    bridge: input.settings.bridge,
    hairpin: input.settings.hairpinMode,
    isolated: input.settings.portIsolation
  })))
  .optionalStep("vlan", portVlan, (input) => {
    const vid = input.settings.vlan
    return vid === undefined ? Pipeline.skip : {
      netns: HOST_NETNS,
      link: hostVeth(input),
      vid,
      preserveDefaultVlan: input.settings.preserveDefaultVlan
    }
  }, Pipeline.checkOnly(({ input }) => {
    const vid = input.settings.vlan
    return vid === undefined ? Pipeline.skip : { netns: HOST_NETNS, link: hostVeth(input), vid, removedDefault: false }
  }))
  .step("hostUp", linkUp, (input) => ({ netns: HOST_NETNS, link: hostVeth(input) }),
    Pipeline.checkOnly(({ input }) => ({ netns: HOST_NETNS, link: hostVeth(input), wasUp: false })))
  .optionalStep("ipam", ipamAllocate, (input) => ipamRequest(input) ?? Pipeline.skip, ({ input, prevResult, pod }, purpose) => {
    const request = ipamRequest(input)
    if (request === undefined) return Pipeline.skip
    // DEL releases the IP whatever prevResult says (the IPAM plugin gets all of it); CHECK
    // asks the IPAM plugin about the pod's addresses, when prevResult has them
    if (purpose === "del") return { ...request, result: prevResult ?? { cniVersion: input.cniVersion } }
    return pod === undefined ? Pipeline.skip : { ...request, result: pod }
  })
  .step("plan", planStep, (input, handles) => ({ bridge: input, result: ipamResult(handles) }), Pipeline.unlocated)
  // Duplicate address detection holds an IPv6 address back for seconds: off unless asked for.
  .optionalStep("noDad", setSysctl, (input, handles) =>
    skipUnless(!input.settings.enabledad && hasIpv6(ipamResult(handles)), () => ({
      netns: input.netns,
      key: sysctlKey("net", "ipv6", "conf", input.ifname, "accept_dad"),
      value: "0"
    })), Pipeline.unlocated) // DAD only matters while the address is new: nothing to verify later
  // a pod given an address another pod had announces its MAC (gratuitous ARP on up and on
  // address changes), so neighbours stop sending to the old one; as the reference does
  // whenever IPAM configured the interface
  .optionalStep("arpNotify", setSysctl, (input, handles) =>
    skipUnless(handles.plan.addresses.length > 0, () => ({ netns: input.netns, key: arpNotifyKey(input.ifname), value: "1" })),
    Pipeline.checkOnly((known) =>
      skipUnless(plannedAddresses(known).length > 0, () => ({
        netns: known.input.netns,
        key: arpNotifyKey(known.input.ifname),
        value: "1",
        previous: "0",
        restoreOnUndo: true
      }))))
  .step("addresses", eachOf(addAddress), (input, handles) =>
    handles.plan.addresses.map((cidr) => ({ netns: input.netns, link: input.ifname, cidr })),
    Pipeline.checkOnly((known) => plannedAddresses(known).map((cidr) => ({ netns: known.input.netns, link: known.input.ifname, cidr, created: true }))))
  .optionalStep("podUp", linkUp, (input) =>
    skipUnless(!input.settings.disableContainerInterface, () => ({ netns: input.netns, link: input.ifname })),
    Pipeline.checkOnly(({ input }) =>
      skipUnless(!input.settings.disableContainerInterface, () => ({ netns: input.netns, link: input.ifname, wasUp: false }))))
  .step("routes", eachOf(addRoute), (input, handles) => handles.plan.routes.map((route) => ({ netns: input.netns, route })),
    Pipeline.checkOnly((known) => (known.plan?.routes ?? []).map((route) => ({ netns: known.input.netns, route }))))
  .step("gateways", eachOf(gatewayAddress), (input, handles) =>
    handles.plan.gateways.map((cidr) => ({
      netns: HOST_NETNS,
      bridge: input.settings.bridge,
      cidr,
      force: input.settings.forceAddress,
      port: hostVeth(input)
    })), Pipeline.checkOnly((known) =>
      (known.plan?.gateways ?? []).map((cidr) => ({
        netns: HOST_NETNS,
        bridge: known.input.settings.bridge,
        cidr,
        created: false,
        replaced: [],
        port: hostVeth(known.input)
      }))))
  // The pod may only send frames from its own MAC (bridge family, before forwarding).
  .optionalStep("macSpoofCheck", nftElements, (input, handles) =>
    skipUnless(input.settings.macspoofchk, () => ({
      netns: HOST_NETNS,
      table: macSpoofTable(input.settings.network),
      owner: owner(input),
      elements: macSpoofElements(handles.veth.name, handles.veth.peer.mac)
    })), ({ input, podMac }, purpose) => {
      const table = macSpoofTable(input.settings.network)
      if (purpose === "check") {
        return input.settings.macspoofchk ? nftElementsHandle(HOST_NETNS, table, owner(input), macSpoofElements(hostVeth(input), podMac)) : Pipeline.skip
      }
      // DEL looks wherever nftables is in use anyway (the config may have lost the option
      // since ADD): by key with prevResult's MAC, else by owner
      const elements = podMac === undefined ? undefined : macSpoofElements(hostVeth(input), podMac)
      return input.settings.macspoofchk || input.settings.ipMasqBackend === "nftables"
        ? nftElementsHandle(HOST_NETNS, table, owner(input), elements)
        : Pipeline.skip
    })
  .optionalStep("masquerade", nftElements, (input, handles) =>
    skipUnless(masquerades(input, "nftables", handles.plan.addresses), () => ({
      netns: HOST_NETNS,
      table: masqueradeTable(input.settings.network),
      owner: owner(input),
      elements: masqueradeElements(handles.plan.addresses)
    })), ({ input, pod, plan }, purpose) => {
      if (input.settings.ipMasqBackend !== "nftables") return Pipeline.skip
      const table = masqueradeTable(input.settings.network)
      // DEL: by key from prevResult's addresses, by owner without them (ipMasq may have
      // been turned off since ADD)
      if (purpose === "del") {
        return nftElementsHandle(HOST_NETNS, table, owner(input), pod === undefined ? undefined : masqueradeElements((pod.ips ?? []).map((ip) => ip.address)))
      }
      const addresses = plan?.addresses ?? []
      return masquerades(input, "nftables", addresses) ? nftElementsHandle(HOST_NETNS, table, owner(input), masqueradeElements(addresses)) : Pipeline.skip
    })
  // ipMasqBackend: "iptables": the same masquerade, a chain of the pod's per family
  .optionalStep("iptablesMasquerade", eachOf(iptablesPodChains), (input, handles) =>
    skipUnless(masquerades(input, "iptables", handles.plan.addresses), () =>
      masqueradePodBatches(handles.plan.addresses, owner(input), masqueradeChainOf(input.containerId, input.ifname))
        .map((batch) => ({ netns: HOST_NETNS, batch }))), ({ input, plan }, purpose) => {
      if (input.settings.ipMasqBackend !== "iptables") return Pipeline.skip
      // DEL: the pod's chains in both families by name (one the pod had no address of holds none)
      if (purpose === "del") {
        const chains = [{ name: masqueradeChainOf(input.containerId, input.ifname), entry: MASQUERADE_ENTRY.name }]
        return iptablesPodChainsHandles(HOST_NETNS, "nat", owner(input), chains)
      }
      const addresses = plan?.addresses ?? []
      return masquerades(input, "iptables", addresses)
        ? masqueradePodBatches(addresses, owner(input), masqueradeChainOf(input.containerId, input.ifname)).map((batch) =>
          iptablesPodChainsHandle(HOST_NETNS, batch)
        )
        : Pipeline.skip
    })
  // last: see hostSwitch. The bridge's promiscuous mode is one too (every pod of the
  // bridge relies on it); as in the reference, CHECK does not verify it
  .optionalStep("promisc", setLinkOptions, (input) =>
    skipUnless(input.settings.promiscMode, () => ({
      netns: HOST_NETNS,
      link: input.settings.bridge,
      options: { promisc: true },
      restoreOnUndo: false
    })), Pipeline.unlocated)
  .optionalStep("forwardV4", setSysctl, (input, handles) =>
    skipUnless(input.settings.isGateway && hasIpv4(handles.plan.addresses), () => hostSwitch("net.ipv4.ip_forward")),
    Pipeline.checkOnly((known) =>
      skipUnless(known.input.settings.isGateway && hasIpv4(plannedAddresses(known)), () => hostSwitchHandle("net.ipv4.ip_forward"))))
  .optionalStep("forwardV6", setSysctl, (input, handles) =>
    skipUnless(input.settings.isGateway && hasIpv6Address(handles.plan.addresses), () => hostSwitch("net.ipv6.conf.all.forwarding")),
    Pipeline.checkOnly((known) =>
      skipUnless(known.input.settings.isGateway && hasIpv6Address(plannedAddresses(known)), () => hostSwitchHandle("net.ipv6.conf.all.forwarding"))))
  // kube-proxy must see bridged pod traffic in iptables/nftables
  .step("bridgeNf", eachOf(setSysctl), (input) => BRIDGE_NF.filter((key) => input.hostSysctls.has(key)).map(hostSwitch),
    Pipeline.checkOnly(({ input }) => BRIDGE_NF.filter((key) => input.hostSysctls.has(key)).map(hostSwitchHandle)))

/** The handles of one ADD by step key, as the plugin's result is built from them. */
export type BridgeHandles = Pipeline.HandlesOf<typeof bridgePipeline>
