/**
 * VXLAN: an overlay to the peers the underlay does not connect directly, as flannel's
 * vxlan backend programs it. One device per node, `tscni.<VNI>` (learning off, no default
 * remote, MTU the underlay's minus 50, the node subnet's `.0/32` as its address, a MAC
 * derived from the node's name so it is the same after every restart and reboot), and per
 * peer three kernel objects, all on that device (so all of them the agent's own):
 *   - a permanent neighbour entry: the peer subnet's `.0` → the peer's VTEP MAC;
 *   - a permanent forwarding entry: the peer's VTEP MAC → the peer's underlay address;
 *   - an onlink route: the peer subnet via its `.0` on the device (protocol 116).
 * Reconciled by difference, never flushed: an agent restart with the same settings finds
 * everything right and changes nothing, so traffic between pods never stops.
 */
import { createHash } from "node:crypto"
import { Effect } from "effect"
import { Backend, type BackendError, HOST_NETNS, isNotFound, type LinkInfo, type Route } from "@tscni/backend"
import { type Cidr, formatCidr, formatIp, parseIp } from "@tscni/ip"
import type { ClusterConfig } from "./config.ts"
import type { SubnetClaim } from "./leases.ts"

/** The VXLAN device's name: tscni.<VNI> (at most 14 bytes). */
export const vxlanDeviceName = (vni: number): string => `tscni.${vni}`

/** VXLAN's headers: outer IPv4 (20) + UDP (8) + VXLAN (8) + inner Ethernet (14). */
export const VXLAN_OVERHEAD = 50

/**
 * The node's VTEP MAC: from its name and the VNI, locally administered and unicast, so it
 * survives restarts and reboots (peers' forwarding entries stay right) without being stored.
 */
export const vtepMacOf = (node: string, vni: number): string => {
  const bytes = createHash("sha256").update(`tscni vtep ${node} ${vni}`).digest().subarray(0, 6)
  bytes[0] = (bytes[0]! & 0xfc) | 0x02
  return Array.from(bytes, (byte) => byte.toString(16).padStart(2, "0")).join(":")
}

/** A subnet's first address (its `.0`): the address of its node's VXLAN device. */
const firstAddress = (subnet: Cidr): string => formatIp(subnet.ip)

/** What the node wants for one VXLAN peer. */
export interface VxlanPeer {
  readonly node: string
  readonly subnet: Cidr
  readonly publicIp: string
  readonly vtepMac: string
}

/**
 * The peer subnets among `claims` that can be reached over VXLAN: those of nodes that
 * publish a VTEP. IPv6 subnets too: the overlay carries IPv6 frames between the same IPv4
 * VTEPs (a neighbour for the subnet's first address, an onlink route), no IPv6 underlay needed.
 */
export const vxlanPeersOf = (claims: ReadonlyArray<SubnetClaim>, self: string): ReadonlyArray<VxlanPeer> =>
  claims.flatMap((claim) => {
    const { node, publicIp, backend } = claim.record
    if (node === self || publicIp === undefined || parseIp(publicIp)?.family !== 4) return []
    if (backend?.type !== "vxlan" || backend.vtepMac === undefined) return []
    return [{ node, subnet: claim.subnet, publicIp, vtepMac: backend.vtepMac }]
  })

/** The route to a VXLAN peer's subnet. */
export const vxlanRoute = (device: string, peer: VxlanPeer): Route => ({
  dst: formatCidr(peer.subnet),
  gateway: firstAddress(peer.subnet),
  link: device,
  onlink: true
})

const sameDevice = (link: LinkInfo, wanted: { readonly vni: number; readonly port: number; readonly local: string; readonly underlayIndex: number; readonly mac: string }) =>
  link.kind === "vxlan" && link.vxlan !== undefined && link.vxlan.vni === wanted.vni && link.vxlan.port === wanted.port &&
  link.vxlan.local === wanted.local && link.vxlan.underlayIndex === wanted.underlayIndex && !link.vxlan.learning && link.mac === wanted.mac

/**
 * Makes the node's VXLAN device what the config and underlay say: kept when it already is
 * (a restart), made again when a setting differs (the underlay address changed), up, with
 * each own subnet's first address as its only addresses (IPv4 /32, IPv6 /128, besides the
 * kernel's link-local). Returns its name and what changed.
 */
export const ensureVxlanDevice = (
  config: ClusterConfig,
  node: string,
  underlay: { readonly iface: string; readonly publicIp: string; readonly mtu: number },
  ownSubnets: ReadonlyArray<Cidr>
): Effect.Effect<{ readonly name: string; readonly changes: ReadonlyArray<string> }, BackendError, Backend> =>
  Effect.gen(function*() {
    const backend = yield* Backend
    const name = vxlanDeviceName(config.backend.vni)
    const underlayLink = yield* backend.getLink(HOST_NETNS, underlay.iface)
    const wanted = { vni: config.backend.vni, port: config.backend.port, local: underlay.publicIp, underlayIndex: underlayLink.index, mac: vtepMacOf(node, config.backend.vni) }
    const existing = yield* backend.getLink(HOST_NETNS, name).pipe(Effect.catchIf(isNotFound, () => Effect.succeed(undefined)))
    const changes: Array<string> = []
    if (existing !== undefined && !sameDevice(existing, wanted)) {
      yield* backend.deleteLink(HOST_NETNS, name)
      changes.push(`removed ${name}: its settings were not the config's`)
    }
    if (existing === undefined || !sameDevice(existing, wanted)) {
      changes.push(`made ${name} (VNI ${wanted.vni}, port ${wanted.port}, local ${wanted.local}, MAC ${wanted.mac})`)
      yield* backend.createLink({
        netns: HOST_NETNS,
        name,
        kind: "vxlan",
        mtu: config.mtu ?? underlay.mtu - VXLAN_OVERHEAD,
        mac: wanted.mac,
        vxlan: { vni: wanted.vni, port: wanted.port, local: wanted.local, underlay: underlay.iface, learning: false }
      })
    }
    // the first address of each own subnet (IPv4 /32, IPv6 /128); the kernel's IPv6 link-local stays
    const own = ownSubnets.map((subnet) => `${firstAddress(subnet)}/${subnet.ip.family === 4 ? 32 : 128}`)
    const addresses = yield* backend.listAddresses(HOST_NETNS, name)
    for (const other of addresses) {
      if (own.includes(other.cidr) || other.cidr.startsWith("fe80:")) continue
      yield* backend.deleteAddress(HOST_NETNS, name, other.cidr)
      changes.push(`removed address ${other.cidr} from ${name}`)
    }
    for (const address of own) {
      if (addresses.some((present) => present.cidr === address)) continue
      yield* backend.addAddress(HOST_NETNS, name, address, { noDad: true })
      changes.push(`added address ${address} to ${name}`)
    }
    if (!(yield* backend.getLink(HOST_NETNS, name)).up) {
      yield* backend.setLink(HOST_NETNS, name, { up: true })
      changes.push(`set ${name} up`)
    }
    return { name, changes }
  })

/** Removes the node's VXLAN device if there is one (the backend is host-gw now). */
export const removeVxlanDevice = (vni: number): Effect.Effect<boolean, BackendError, Backend> =>
  Effect.gen(function*() {
    const backend = yield* Backend
    return yield* backend.deleteLink(HOST_NETNS, vxlanDeviceName(vni)).pipe(
      Effect.as(true),
      Effect.catchIf(isNotFound, () => Effect.succeed(false))
    )
  })

/**
 * Makes the device's neighbour and forwarding entries exactly those of `peers`: every
 * entry on the device is the agent's; others are deleted, missing or changed ones set.
 */
export const reconcileVxlanEntries = (device: string, peers: ReadonlyArray<VxlanPeer>): Effect.Effect<ReadonlyArray<string>, BackendError, Backend> =>
  Effect.gen(function*() {
    const backend = yield* Backend
    const changes: Array<string> = []
    const wantedNeighbors = new Map(peers.map((peer) => [firstAddress(peer.subnet), peer.vtepMac]))
    for (const entry of yield* backend.listNeighbors(HOST_NETNS, device)) {
      if (wantedNeighbors.get(entry.ip) === entry.mac && entry.permanent) wantedNeighbors.delete(entry.ip)
      else if (!wantedNeighbors.has(entry.ip)) {
        yield* backend.deleteNeighbor(HOST_NETNS, { link: device, ip: entry.ip }).pipe(Effect.catchIf(isNotFound, () => Effect.void))
        changes.push(`removed neighbour ${entry.ip}`)
      }
    }
    for (const [ip, mac] of wantedNeighbors) {
      yield* backend.setNeighbor(HOST_NETNS, { link: device, ip, mac })
      changes.push(`set neighbour ${ip} ${mac}`)
    }
    // one forwarding entry per peer node, whatever number of subnets it has
    const wantedFdb = new Map(peers.map((peer) => [peer.vtepMac, peer.publicIp]))
    for (const entry of yield* backend.listFdb(HOST_NETNS, device)) {
      if (wantedFdb.get(entry.mac) === entry.dst) wantedFdb.delete(entry.mac)
      else {
        yield* backend.deleteFdb(HOST_NETNS, entry).pipe(Effect.catchIf(isNotFound, () => Effect.void))
        changes.push(`removed fdb ${entry.mac} dst ${entry.dst}`)
      }
    }
    for (const [mac, dst] of wantedFdb) {
      yield* backend.setFdb(HOST_NETNS, { link: device, mac, dst })
      changes.push(`set fdb ${mac} dst ${dst}`)
    }
    return changes
  })
