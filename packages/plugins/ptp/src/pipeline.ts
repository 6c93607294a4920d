import { HOST_NETNS, sysctlKey } from "@tscni/backend"
import { derive, eachOf, Pipeline } from "@tscni/engine"
import type { Result } from "@tscni/spec"
import {
  addAddress,
  addRoute,
  arpNotifyInput,
  type DelegatingRequest,
  FORWARDING,
  hostSwitch,
  hostSwitchHandle,
  ipamAllocate,
  ipamRequest,
  iptablesMasqueradeInput,
  iptablesPodChains,
  linkUp,
  locateArpNotify,
  locateIpamAllocation,
  locateIptablesMasquerade,
  locateNftMasquerade,
  nftElements,
  nftMasqueradeInput,
  podMasquerade,
  type PodMasquerade,
  setSysctl,
  vethPair,
  vethPairByName
} from "@tscni/steps"
import type { PtpSettings } from "./config.ts"
import { hostVethName, ruleOwner, vethAlias } from "./names.ts"
import { planPtp, PtpPlan } from "./plan.ts"
import { dropConnectedRoute } from "./steps/dropConnectedRoute.ts"

/** One ptp ADD: the decided settings and the request they apply to. */
export interface PtpInput extends DelegatingRequest {
  readonly settings: PtpSettings
}

/**
 * What DEL and CHECK know of a ptp attachment without ADD's memory: the request and config
 * as ADD's input, prevResult, and what the plugin worked out from it.
 */
export interface PtpKnown {
  readonly input: PtpInput
  /** prevResult as the runtime passed it (the IPAM plugin's DEL gets it) */
  readonly prevResult: Result | undefined
  /** this pod's part of prevResult: its interface's IPs (a chain's result may hold others) */
  readonly pod: Result | undefined
  /** CHECK's plan, worked out from `pod`; DEL needs none */
  readonly plan: PtpPlan | undefined
}

const hostVeth = (input: PtpInput): string => hostVethName(input.containerId, input.ifname)
const ipam = (input: PtpInput) => ipamRequest(input.settings.ipamType, input)
const planned = (known: PtpKnown) => known.plan ?? { addresses: [], connected: [], routes: [], gateways: [], hostRoutes: [] }
const hasFamily = (family: 4 | 6, addresses: ReadonlyArray<string>): boolean => addresses.some((address) => address.includes(":") === (family === 6))

/** A link's IPv6 duplicate address detection switch. */
const acceptDad = (link: string): string => sysctlKey("net", "ipv6", "conf", link, "accept_dad")

/** The pod's masquerade, as ipMasq and ipMasqBackend configure it (owner `ptp:…`). */
const masquerade = (input: PtpInput): PodMasquerade =>
  podMasquerade(input.settings, input, ruleOwner(input.settings.network, input.containerId, input.ifname))

/** Works out the pod's and the host's addresses and routes from the IPAM result; an unusable result fails here. */
const planStep = derive("planPtp", PtpPlan, (input: { readonly ptp: PtpInput; readonly result: Result }) =>
  planPtp(input.result, { ifname: input.ptp.ifname, hostVeth: hostVeth(input.ptp) }))

/** A forwarding switch, on when the pod has an address of that family. */
const forwarding = (family: 4 | 6) => ({
  input: (addresses: ReadonlyArray<string>) => (hasFamily(family, addresses) ? hostSwitch(FORWARDING[family]) : Pipeline.skip),
  locate: Pipeline.checkOnly((known: PtpKnown) => (hasFamily(family, planned(known).addresses) ? hostSwitchHandle(FORWARDING[family]) : Pipeline.skip))
})
const forwardV4 = forwarding(4)
const forwardV6 = forwarding(6)

/**
 * The ptp plugin's ADD, in the reference plugin's order: IPAM, the veth pair, the pod's
 * addresses and routes, the host end's gateway addresses and routes to the pod, masquerade,
 * then forwarding (a host switch: last, never put back, see hostSwitch in @tscni/steps).
 * Every step is undone in reverse if a later one fails, the IP released included.
 *
 * DEL undoes the pod's own things: its veth (everything on either end goes with it), its IP,
 * its masquerade; CHECK verifies everything ADD promised. Each step says how they find it
 * (`locate`).
 */
export const ptpPipeline = Pipeline.make<PtpInput, PtpKnown>("ptp")
  .step("ipam", ipamAllocate, ipam, ({ input, prevResult, pod }, purpose) => locateIpamAllocation(ipam(input), purpose, prevResult, pod))
  .step("plan", planStep, (input, handles) => ({ ptp: input, result: handles.ipam.result }), Pipeline.unlocated)
  .step("veth", vethPair, (input) => ({
    netns: HOST_NETNS,
    name: hostVeth(input),
    peerNetns: input.netns,
    peerName: input.ifname,
    alias: vethAlias(input.settings.network, input.containerId, input.ifname),
    ...(input.settings.mtu !== undefined ? { mtu: input.settings.mtu } : {})
  }), ({ input }) => vethPairByName(HOST_NETNS, hostVeth(input), input.netns, input.ifname)) // undo deletes the host end; the pod's goes with it
  // IPv6: the host end's link-local address is what the host sends its neighbour
  // solicitations from when it forwards to the pod; held back by duplicate address detection
  // for a second or two, the pod is unreachable from other pods that long. Off on the host
  // end, which only ever carries its own addresses (the link sysctl goes with the link)
  .optionalStep("hostNoDad", setSysctl, (input, handles) =>
    hasFamily(6, handles.plan.addresses) ? { netns: HOST_NETNS, key: acceptDad(hostVeth(input)), value: "0" } : Pipeline.skip,
    Pipeline.unlocated) // only matters while the link is new: nothing to verify later
  .step("hostUp", linkUp, (input) => ({ netns: HOST_NETNS, link: hostVeth(input) }),
    Pipeline.checkOnly(({ input }) => ({ netns: HOST_NETNS, link: hostVeth(input), wasUp: false })))
  // the reference ptp leaves arp_notify off; tscni sets it, as bridge does (issue 15: a pod
  // given a recycled IP announces its MAC)
  .optionalStep("arpNotify", setSysctl, (input, handles) => arpNotifyInput(input.netns, input.ifname, handles.plan.addresses),
    (known, purpose) => locateArpNotify(known.input.netns, known.input.ifname, planned(known).addresses, purpose))
  // IPv6 addresses without duplicate address detection (nodad): DAD holds an address back
  // for seconds, and a route from an address held back is refused; these are the pod's and
  // the host end's own by construction
  .step("addresses", eachOf(addAddress), (input, handles) =>
    handles.plan.addresses.map((cidr) => ({ netns: input.netns, link: input.ifname, cidr, noDad: true })),
    Pipeline.checkOnly((known) => planned(known).addresses.map((cidr) => ({ netns: known.input.netns, link: known.input.ifname, cidr, created: true }))))
  .step("podUp", linkUp, (input) => ({ netns: input.netns, link: input.ifname }),
    Pipeline.checkOnly(({ input }) => ({ netns: input.netns, link: input.ifname, wasUp: false })))
  // the rest of the pod's network is not on its link: only through the gateway
  .step("connected", eachOf(dropConnectedRoute), (input, handles) => handles.plan.connected.map((route) => ({ netns: input.netns, route })),
    Pipeline.checkOnly((known) => planned(known).connected.map((route) => ({ netns: known.input.netns, route, dropped: true }))))
  .step("routes", eachOf(addRoute), (input, handles) => handles.plan.routes.map((route) => ({ netns: input.netns, route })),
    Pipeline.checkOnly((known) => planned(known).routes.map((route) => ({ netns: known.input.netns, route }))))
  .step("gateways", eachOf(addAddress), (input, handles) =>
    handles.plan.gateways.map((cidr) => ({ netns: HOST_NETNS, link: hostVeth(input), cidr, noDad: true })),
    Pipeline.checkOnly((known) => planned(known).gateways.map((cidr) => ({ netns: HOST_NETNS, link: hostVeth(known.input), cidr, created: true }))))
  .step("hostRoutes", eachOf(addRoute), (_input, handles) => handles.plan.hostRoutes.map((route) => ({ netns: HOST_NETNS, route })),
    Pipeline.checkOnly((known) => planned(known).hostRoutes.map((route) => ({ netns: HOST_NETNS, route }))))
  .optionalStep("masquerade", nftElements, (input, handles) => nftMasqueradeInput(masquerade(input), handles.plan.addresses),
    ({ input, pod, plan }, purpose) => locateNftMasquerade(masquerade(input), purpose, pod, plan?.addresses ?? []))
  // ipMasqBackend: "iptables": the same masquerade, a chain of the pod's per family
  .optionalStep("iptablesMasquerade", eachOf(iptablesPodChains), (input, handles) => iptablesMasqueradeInput(masquerade(input), handles.plan.addresses),
    ({ input, plan }, purpose) => locateIptablesMasquerade(masquerade(input), purpose, plan?.addresses ?? []))
  // last: host switches, never put back (the reference enables forwarding for every pod's families)
  .optionalStep("forwardV4", setSysctl, (_input, handles) => forwardV4.input(handles.plan.addresses), forwardV4.locate)
  .optionalStep("forwardV6", setSysctl, (_input, handles) => forwardV6.input(handles.plan.addresses), forwardV6.locate)

/** The handles of one ADD by step key, as the plugin's result is built from them. */
export type PtpHandles = Pipeline.HandlesOf<typeof ptpPipeline>
