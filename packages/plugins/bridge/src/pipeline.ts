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
  linkUp,
  masqueradeElements,
  masqueradePodBatches,
  masqueradeTable,
  nftElements,
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

/**
 * The bridge plugin's ADD, in the reference plugin's order: bridge, veth pair, port, IPAM,
 * the pod's addresses and routes, the gateway on the bridge, forwarding, masquerade. Every
 * step is undone in reverse if a later one fails, the IP released included.
 */
export const bridgePipeline = Pipeline.make<BridgeInput>("bridge")
  .step("bridge", ensureBridge, (input) => ({
    netns: HOST_NETNS,
    name: input.settings.bridge,
    alias: bridgeAlias(input.settings.network),
    ...(input.settings.vlan !== undefined ? { vlanFiltering: true } : {}),
    ...(input.settings.mtu !== undefined ? { mtu: input.settings.mtu } : {})
  }))
  .optionalStep("promisc", setLinkOptions, (input) =>
    skipUnless(input.settings.promiscMode, () => ({ netns: HOST_NETNS, link: input.settings.bridge, options: { promisc: true } })))
  .step("veth", vethPair, (input) => ({
    netns: HOST_NETNS,
    name: hostVethName(input.containerId, input.ifname),
    peerNetns: input.netns,
    peerName: input.ifname,
    alias: vethAlias(input.settings.network, input.containerId, input.ifname),
    ...(input.settings.mtu !== undefined ? { mtu: input.settings.mtu } : {}),
    ...(input.settings.mac !== undefined ? { peerMac: input.settings.mac } : {})
  }))
  .step("port", attachToBridge, (input) => ({
    netns: HOST_NETNS,
    link: hostVethName(input.containerId, input.ifname),
    bridge: input.settings.bridge,
    hairpin: input.settings.hairpinMode,
    isolated: input.settings.portIsolation
  }))
  .optionalStep("vlan", portVlan, (input) => {
    const vid = input.settings.vlan
    return vid === undefined ? Pipeline.skip : {
      netns: HOST_NETNS,
      link: hostVethName(input.containerId, input.ifname),
      vid,
      preserveDefaultVlan: input.settings.preserveDefaultVlan
    }
  })
  .step("hostUp", linkUp, (input) => ({ netns: HOST_NETNS, link: hostVethName(input.containerId, input.ifname) }))
  .optionalStep("ipam", ipamAllocate, (input) => ipamRequest(input) ?? Pipeline.skip)
  .step("plan", planStep, (input, handles) => ({ bridge: input, result: ipamResult(handles) }))
  // Duplicate address detection holds an IPv6 address back for seconds: off unless asked for.
  .optionalStep("noDad", setSysctl, (input, handles) =>
    skipUnless(!input.settings.enabledad && hasIpv6(ipamResult(handles)), () => ({
      netns: input.netns,
      key: sysctlKey("net", "ipv6", "conf", input.ifname, "accept_dad"),
      value: "0"
    })))
  // a pod given an address another pod had announces its MAC (gratuitous ARP on up and on
  // address changes), so neighbours stop sending to the old one; as the reference does
  // whenever IPAM configured the interface
  .optionalStep("arpNotify", setSysctl, (input, handles) =>
    skipUnless(handles.plan.addresses.length > 0, () => ({ netns: input.netns, key: arpNotifyKey(input.ifname), value: "1" })))
  .step("addresses", eachOf(addAddress), (input, handles) =>
    handles.plan.addresses.map((cidr) => ({ netns: input.netns, link: input.ifname, cidr })))
  .optionalStep("podUp", linkUp, (input) =>
    skipUnless(!input.settings.disableContainerInterface, () => ({ netns: input.netns, link: input.ifname })))
  .step("routes", eachOf(addRoute), (input, handles) => handles.plan.routes.map((route) => ({ netns: input.netns, route })))
  .step("gateways", eachOf(gatewayAddress), (input, handles) =>
    handles.plan.gateways.map((cidr) => ({
      netns: HOST_NETNS,
      bridge: input.settings.bridge,
      cidr,
      force: input.settings.forceAddress
    })))
  .optionalStep("forwardV4", setSysctl, (input, handles) =>
    skipUnless(input.settings.isGateway && (ipamResult(handles)?.ips ?? []).some((ip) => !ip.address.includes(":")), () => ({
      netns: HOST_NETNS,
      key: "net.ipv4.ip_forward",
      value: "1"
    })))
  .optionalStep("forwardV6", setSysctl, (input, handles) =>
    skipUnless(input.settings.isGateway && hasIpv6(ipamResult(handles)), () => ({
      netns: HOST_NETNS,
      key: "net.ipv6.conf.all.forwarding",
      value: "1"
    })))
  // kube-proxy must see bridged pod traffic in iptables/nftables
  .step("bridgeNf", eachOf(setSysctl), (input) =>
    BRIDGE_NF.filter((key) => input.hostSysctls.has(key)).map((key) => ({ netns: HOST_NETNS, key, value: "1" })))
  // The pod may only send frames from its own MAC (bridge family, before forwarding).
  .optionalStep("macSpoofCheck", nftElements, (input, handles) =>
    skipUnless(input.settings.macspoofchk, () => ({
      netns: HOST_NETNS,
      table: macSpoofTable(input.settings.network),
      owner: ruleOwner(input.settings.network, input.containerId, input.ifname),
      elements: macSpoofElements(handles.veth.name, handles.veth.peer.mac)
    })))
  .optionalStep("masquerade", nftElements, (input, handles) => {
    const elements = masqueradeElements(handles.plan.addresses)
    return input.settings.ipMasq && input.settings.ipMasqBackend === "nftables" && elements.length > 0
      ? {
        netns: HOST_NETNS,
        table: masqueradeTable(input.settings.network),
        owner: ruleOwner(input.settings.network, input.containerId, input.ifname),
        elements
      }
      : Pipeline.skip
  })
  // ipMasqBackend: "iptables": the same masquerade, a chain of the pod's per family
  .optionalStep("iptablesMasquerade", eachOf(iptablesPodChains), (input, handles) =>
    skipUnless(input.settings.ipMasq && input.settings.ipMasqBackend === "iptables", () =>
      masqueradePodBatches(
        handles.plan.addresses,
        ruleOwner(input.settings.network, input.containerId, input.ifname),
        masqueradeChainOf(input.containerId, input.ifname)
      ).map((batch) => ({ netns: HOST_NETNS, batch }))))
