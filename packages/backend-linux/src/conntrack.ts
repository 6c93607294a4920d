import { type ConntrackFilter, conntrackPortProblem } from "@tscni/backend"
import { kernelError, KernelCallFailed } from "./errors.ts"
import { addressFamilyCode, AttributeWriter, decodeAttributes } from "./netlink/message.ts"
import type { RouteSocket } from "./netlink/socket.ts"

/**
 * Connection tracking over NETLINK_NETFILTER (ctnetlink): find the entries of one
 * destination port and delete them, as `conntrack -D -p udp --dport N` does. Portmap needs
 * it: a UDP flow keeps its old (pre-DNAT) entry and bypasses a new mapping until it expires.
 */

const NFNL_SUBSYS_CTNETLINK = 1
const IPCTNL_MSG_CT_NEW = 0
const IPCTNL_MSG_CT_GET = 1
const IPCTNL_MSG_CT_DELETE = 2
const CTA_TUPLE_ORIG = 1
const CTA_TUPLE_PROTO = 2
const CTA_PROTO_NUM = 1
const CTA_PROTO_DST_PORT = 3
const NFGENMSG_LENGTH = 4

const PROTOCOLS = { tcp: 6, udp: 17, sctp: 132 } as const

/** struct nfgenmsg */
const nfgenmsg = (family: number): Uint8Array => Uint8Array.of(family, 0, 0, 0)

const type = (message: number): number => (NFNL_SUBSYS_CTNETLINK << 8) | message

/** Deletes every tracked connection whose original direction matches; returns how many. */
export const deleteConntrack = (socket: RouteSocket, filter: ConntrackFilter): number => {
  const family = addressFamilyCode(filter.family)
  const protocol = PROTOCOLS[filter.protocol]
  let deleted = 0
  for (const message of socket.dump("deleteConntrack", type(IPCTNL_MSG_CT_GET), nfgenmsg(family))) {
    if (message.type !== type(IPCTNL_MSG_CT_NEW)) continue
    const original = decodeAttributes(message.payload.subarray(NFGENMSG_LENGTH)).get(CTA_TUPLE_ORIG)
    const proto = original ? decodeAttributes(original).get(CTA_TUPLE_PROTO) : undefined
    if (!original || !proto) continue
    const fields = decodeAttributes(proto)
    const port = fields.get(CTA_PROTO_DST_PORT)
    if (fields.get(CTA_PROTO_NUM)?.[0] !== protocol || !port || ((port[0]! << 8) | port[1]!) !== filter.dstPort) continue
    const request = new AttributeWriter().nestedBytes(CTA_TUPLE_ORIG, original).finish()
    try {
      socket.request("deleteConntrack", type(IPCTNL_MSG_CT_DELETE), 0, nfgenmsg(family), request)
      deleted++
    } catch (error) {
      // expired between the dump and the delete: fine
      if (!(error instanceof KernelCallFailed && error.error.reason === "NotFound")) throw error
    }
  }
  return deleted
}

/**
 * Rejects a destination port outside 1..65535 as EINVAL before any ctnetlink traffic, so
 * a bad filter fails like a kernel refusal instead of silently matching nothing.
 */
export const invalidFilter = (filter: ConntrackFilter): KernelCallFailed | undefined => {
  const problem = conntrackPortProblem(filter.dstPort)
  return problem === undefined ? undefined : new KernelCallFailed(kernelError("deleteConntrack", 22, problem))
}
