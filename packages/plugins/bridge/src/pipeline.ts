import { HOST_NETNS, sysctlKey } from "@tscni/backend"
import { derive, eachOf, Pipeline } from "@tscni/engine"
import type { Result } from "@tscni/spec"
import {
  addAddress,
  addRoute,
  arpNotifyInput,
  attachToBridge,
  type DelegatingRequest,
  ensureBridge,
  FORWARDING,
  hostSwitch,
  hostSwitchHandle,
  ipamAllocate,
  type IpamAllocateInput,
  ipamRequest as delegation,
  iptablesMasqueradeInput,
  iptablesPodChains,
  linkUp,
  locateArpNotify,
  locateIpamAllocation,
  locateIptablesMasquerade,
  locateNftMasquerade,
  nftElements,
  nftElementsHandle,
  nftMasqueradeInput,
  podMasquerade,
  type PodMasquerade,
  setLinkOptions,
  setSysctl,
  vethPair,
  vethPairByName
} from "@tscni/steps"
import type { BridgeSettings } from "./config.ts"
import { bridgeAlias, hostVethName, macSpoofElements, macSpoofTable, ruleOwner, vethAlias } from "./names.ts"
import { AddressPlan, planAddresses } from "./plan.ts"
import { gatewayAddress } from "./steps/gatewayAddress.ts"
import { portVlan } from "./steps/portVlan.ts"

/** One bridge ADD: the decided settings and the request they apply to. */
export interface BridgeInput extends DelegatingRequest {
  readonly settings: BridgeSettings
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
  input.settings.ipamType === undefined ? undefined : delegation(input.settings.ipamType, input)

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

/** Host sysctls a gateway needs; set only when present here (bridge-nf needs br_netfilter). */
export const BRIDGE_NF = ["net.bridge.bridge-nf-call-iptables", "net.bridge.bridge-nf-call-ip6tables"]

const hasIpv4 = (addresses: ReadonlyArray<string>): boolean => addresses.some((address) => !address.includes(":"))
const hasIpv6Address = (addresses: ReadonlyArray<string>): boolean => addresses.some((address) => address.includes(":"))

const owner = (input: BridgeInput): string => ruleOwner(input.settings.network, input.containerId, input.ifname)
const hostVeth = (input: BridgeInput): string => hostVethName(input.containerId, input.ifname)
const plannedAddresses = (known: BridgeKnown): ReadonlyArray<string> => known.plan?.addresses ?? []
/** The pod's masquerade, as ipMasq and ipMasqBackend configure it. */
const masquerade = (input: BridgeInput): PodMasquerade => podMasquerade(input.settings, input, owner(input))

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
  }), ({ input }) => vethPairByName(HOST_NETNS, hostVeth(input), input.netns, input.ifname)) // undo deletes the host end (the pod's end goes with it)
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
  .optionalStep("ipam", ipamAllocate, (input) => ipamRequest(input) ?? Pipeline.skip,
    ({ input, prevResult, pod }, purpose) => locateIpamAllocation(ipamRequest(input), purpose, prevResult, pod))
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
  .optionalStep("arpNotify", setSysctl, (input, handles) => arpNotifyInput(input.netns, input.ifname, handles.plan.addresses),
    (known, purpose) => locateArpNotify(known.input.netns, known.input.ifname, plannedAddresses(known), purpose))
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
  .optionalStep("masquerade", nftElements, (input, handles) => nftMasqueradeInput(masquerade(input), handles.plan.addresses),
    ({ input, pod, plan }, purpose) => locateNftMasquerade(masquerade(input), purpose, pod, plan?.addresses ?? []))
  // ipMasqBackend: "iptables": the same masquerade, a chain of the pod's per family
  .optionalStep("iptablesMasquerade", eachOf(iptablesPodChains), (input, handles) => iptablesMasqueradeInput(masquerade(input), handles.plan.addresses),
    ({ input, plan }, purpose) => locateIptablesMasquerade(masquerade(input), purpose, plan?.addresses ?? []))
  // last: see hostSwitch (@tscni/steps). The bridge's promiscuous mode is one too (every pod of the
  // bridge relies on it); as in the reference, CHECK does not verify it
  .optionalStep("promisc", setLinkOptions, (input) =>
    skipUnless(input.settings.promiscMode, () => ({
      netns: HOST_NETNS,
      link: input.settings.bridge,
      options: { promisc: true },
      restoreOnUndo: false
    })), Pipeline.unlocated)
  .optionalStep("forwardV4", setSysctl, (input, handles) =>
    skipUnless(input.settings.isGateway && hasIpv4(handles.plan.addresses), () => hostSwitch(FORWARDING[4])),
    Pipeline.checkOnly((known) =>
      skipUnless(known.input.settings.isGateway && hasIpv4(plannedAddresses(known)), () => hostSwitchHandle(FORWARDING[4]))))
  .optionalStep("forwardV6", setSysctl, (input, handles) =>
    skipUnless(input.settings.isGateway && hasIpv6Address(handles.plan.addresses), () => hostSwitch(FORWARDING[6])),
    Pipeline.checkOnly((known) =>
      skipUnless(known.input.settings.isGateway && hasIpv6Address(plannedAddresses(known)), () => hostSwitchHandle(FORWARDING[6]))))
  // kube-proxy must see bridged pod traffic in iptables/nftables
  .step("bridgeNf", eachOf(setSysctl), (input) => BRIDGE_NF.filter((key) => input.hostSysctls.has(key)).map(hostSwitch),
    Pipeline.checkOnly(({ input }) => BRIDGE_NF.filter((key) => input.hostSysctls.has(key)).map(hostSwitchHandle)))

/** The handles of one ADD by step key, as the plugin's result is built from them. */
export type BridgeHandles = Pipeline.HandlesOf<typeof bridgePipeline>
