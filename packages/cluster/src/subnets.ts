/**
 * Node subnets: the pod network cut into equal parts, one per node, and their names as
 * datastore keys (`10.244.3.0-24`, `fd00:10:244:3::-64`: flannel's form, since `/` would
 * make a key path).
 */
import { bits, type Cidr, contains, formatIp, networkOf, parseCidr } from "@tscni/ip"
import type { PodNetwork } from "./config.ts"

/** How many node subnets the network holds. */
export const subnetCount = (net: PodNetwork): bigint => 1n << BigInt(net.subnetLen - net.network.prefix)

/** The index-th node subnet (0 is the first). */
export const subnetAt = (net: PodNetwork, index: bigint): Cidr => ({
  ip: { family: net.family, value: net.network.ip.value + (index << BigInt(bits(net.family) - net.subnetLen)) },
  prefix: net.subnetLen
})

/** The key naming a subnet. */
export const subnetKey = (subnet: Cidr): string => `${formatIp(subnet.ip)}-${subnet.prefix}`

/** The subnet a key names; undefined for anything that is not a node subnet of `net`. */
export const subnetOfKey = (net: PodNetwork, key: string): Cidr | undefined => {
  const dash = key.lastIndexOf("-")
  const cidr = dash < 0 ? undefined : parseCidr(`${key.slice(0, dash)}/${key.slice(dash + 1)}`)
  return cidr !== undefined && isNodeSubnet(net, cidr) ? cidr : undefined
}

/** Whether a CIDR is one of the network's node subnets (right family, length and alignment). */
export const isNodeSubnet = (net: PodNetwork, cidr: Cidr): boolean =>
  cidr.ip.family === net.family && cidr.prefix === net.subnetLen && contains(net.network, cidr.ip) &&
  networkOf(cidr).ip.value === cidr.ip.value

/**
 * The node subnets not in `taken`, lowest first, lazily: a /48 of /64s has 65,536 of them
 * and the caller wants one.
 */
export function* freeSubnets(net: PodNetwork, taken: ReadonlySet<string>): Generator<Cidr> {
  const count = subnetCount(net)
  for (let index = 0n; index < count; index++) {
    const subnet = subnetAt(net, index)
    if (!taken.has(subnetKey(subnet))) yield subnet
  }
}
