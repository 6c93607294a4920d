import type { AddQdiscRequest, LinkInfo, QdiscInfo, RedirectFilter, TbfOptions } from "@tscni/backend"
import { kernelError, KernelCallFailed } from "../errors.ts"
import { attrString, AttributeWriter, decodeAttributes, NLM_F_CREATE, NLM_F_EXCL } from "../netlink/message.ts"
import type { RouteSocket } from "../netlink/socket.ts"

const RTM_NEWQDISC = 36
const RTM_DELQDISC = 37
const RTM_GETQDISC = 38
const RTM_NEWTFILTER = 44
const RTM_DELTFILTER = 45
const RTM_GETTFILTER = 46

const TCA_KIND = 1
const TCA_OPTIONS = 2
const TCA_TBF_PARMS = 1
const TCA_TBF_RATE64 = 4
const TCA_TBF_BURST = 6
const TCA_U32_SEL = 5
const TCA_U32_ACT = 7
const TCA_ACT_KIND = 1
const TCA_ACT_OPTIONS = 2
const TCA_MIRRED_PARMS = 2

const TC_H_ROOT = 0xffffffff
const TC_H_INGRESS = 0xfffffff1
const INGRESS_HANDLE = 0xffff0000
const CLSACT_INGRESS = 0xfffffff2
const TBF_HANDLE = 0x00010000
const TC_LINKLAYER_ETHERNET = 1
const TC_U32_TERMINAL = 1
const TC_ACT_STOLEN = 4
const TCA_EGRESS_REDIR = 1
const ETH_P_ALL = 0x0003
/** the filter priority tscni's redirects use */
const REDIRECT_PRIORITY = 1
/** the kernel's scheduler clock: 1 tick = 64 ns (PSCHED_SHIFT 6) */
const NS_PER_TICK = 64

const TCMSG_LENGTH = 20

/** struct tcmsg */
const tcmsg = (index: number, handle: number, parent: number, info = 0): Uint8Array => {
  const header = new Uint8Array(TCMSG_LENGTH)
  const view = new DataView(header.buffer)
  view.setInt32(4, index, true)
  view.setUint32(8, handle, true)
  view.setUint32(12, parent, true)
  view.setUint32(16, info, true)
  return header
}

const readTcmsg = (payload: Uint8Array) => {
  const view = new DataView(payload.buffer, payload.byteOffset, payload.byteLength)
  return {
    index: view.getInt32(4, true),
    handle: view.getUint32(8, true),
    parent: view.getUint32(12, true),
    info: view.getUint32(16, true),
    attributes: decodeAttributes(payload.subarray(TCMSG_LENGTH))
  }
}

const handleText = (handle: number): string => `${(handle >>> 16).toString(16)}:`
const parentText = (parent: number): string =>
  parent === TC_H_ROOT ? "root" : parent === TC_H_INGRESS ? "ingress" : `${(parent >>> 16).toString(16)}:${(parent & 0xffff).toString(16)}`

/** struct tc_tbf_qopt with an Ethernet-aware rate, so the kernel needs no rate table. */
const tbfOptions = (tbf: TbfOptions): Uint8Array => {
  const rateBytes = Math.round(tbf.rate / 8)
  const burstBytes = Math.max(1, Math.round(tbf.burst / 8))
  const bufferTicks = Math.min(0xffffffff, Math.round((burstBytes * 1e9) / rateBytes / NS_PER_TICK))
  const qopt = new Uint8Array(36)
  const view = new DataView(qopt.buffer)
  view.setUint8(1, TC_LINKLAYER_ETHERNET)
  view.setUint32(8, Math.min(rateBytes, 0xffffffff), true)
  view.setUint32(24, tbf.limit, true)
  view.setUint32(28, bufferTicks, true)
  const writer = new AttributeWriter().bytes(TCA_TBF_PARMS, qopt).u32(TCA_TBF_BURST, burstBytes)
  if (rateBytes >= 0xffffffff) writer.u64(TCA_TBF_RATE64, BigInt(rateBytes))
  return writer.finish()
}

const readTbf = (options: Uint8Array): TbfOptions | undefined => {
  const attributes = decodeAttributes(options)
  const parms = attributes.get(TCA_TBF_PARMS)
  if (!parms || parms.byteLength < 36) return undefined
  const view = new DataView(parms.buffer, parms.byteOffset, parms.byteLength)
  const rate64 = attributes.get(TCA_TBF_RATE64)
  const rateBytes = rate64 ? Number(new DataView(rate64.buffer, rate64.byteOffset).getBigUint64(0, true)) : view.getUint32(8, true)
  const bufferNs = view.getUint32(28, true) * NS_PER_TICK
  return {
    rate: rateBytes * 8,
    burst: Math.round((bufferNs * rateBytes) / 1e9) * 8,
    limit: view.getUint32(24, true)
  }
}

const KINDS: Record<string, QdiscInfo["kind"]> = { tbf: "tbf", ingress: "ingress", clsact: "clsact" }

/**
 * Every added qdisc of the namespace by ifindex (the kernel's built-in defaults have handle
 * 0 and are left out). The kernel dumps qdiscs of all links whatever tcm_ifindex says, so
 * callers needing several links read one dump: one dump per link made listRedirects
 * quadratic (bandwidth DEL took 130 ms of CPU with 50 shaped pods on the node).
 */
const qdiscsByIndex = (socket: RouteSocket, names: ReadonlyMap<number, string>): Map<number, Array<QdiscInfo>> => {
  const byIndex = new Map<number, Array<QdiscInfo>>()
  for (const message of socket.dump("listQdiscs", RTM_GETQDISC, tcmsg(0, 0, 0))) {
    if (message.type !== RTM_NEWQDISC) continue
    const qdisc = readTcmsg(message.payload)
    const link = names.get(qdisc.index)
    if (link === undefined || qdisc.handle === 0) continue
    const kindName = attrString(qdisc.attributes, TCA_KIND) ?? ""
    const kind = KINDS[kindName] ?? "other"
    const options = qdisc.attributes.get(TCA_OPTIONS)
    const tbf = kind === "tbf" && options ? readTbf(options) : undefined
    const listed = byIndex.get(qdisc.index) ?? []
    listed.push({
      link,
      kind,
      // ingress and clsact both sit at ffff:fff1
      parent: parentText(qdisc.parent),
      handle: handleText(qdisc.handle),
      ...(tbf ? { tbf } : {})
    })
    byIndex.set(qdisc.index, listed)
  }
  return byIndex
}

/** Qdiscs of one link that someone added. */
export const listQdiscs = (socket: RouteSocket, link: LinkInfo): Array<QdiscInfo> =>
  qdiscsByIndex(socket, new Map([[link.index, link.name]])).get(link.index) ?? []

/**
 * Adds the tbf root qdisc (bandwidth shaping) or the ingress qdisc (to redirect to an ifb);
 * the fixed handles let deleteQdisc and the redirect filter find them.
 */
export const addQdisc = (socket: RouteSocket, link: LinkInfo, request: AddQdiscRequest): void => {
  const attributes = new AttributeWriter().string(TCA_KIND, request.kind)
  let header: Uint8Array
  if (request.kind === "tbf") {
    if (!request.tbf || request.parent !== "root") {
      throw new KernelCallFailed(kernelError("addQdisc", 22, "a tbf qdisc needs tbf options and the root parent"))
    }
    attributes.bytes(TCA_OPTIONS, tbfOptions(request.tbf))
    header = tcmsg(link.index, TBF_HANDLE, TC_H_ROOT)
  } else {
    header = tcmsg(link.index, INGRESS_HANDLE, TC_H_INGRESS)
  }
  socket.request("addQdisc", RTM_NEWQDISC, NLM_F_CREATE | NLM_F_EXCL, header, attributes.finish(), `${request.kind} on ${link.name}`)
}

/** Removes the root or ingress qdisc of a link, which takes its filters with it. */
export const deleteQdisc = (socket: RouteSocket, link: LinkInfo, parent: "root" | "ingress"): void => {
  const header = tcmsg(link.index, 0, parent === "root" ? TC_H_ROOT : TC_H_INGRESS)
  socket.request("deleteQdisc", RTM_DELQDISC, 0, header, undefined, `${parent} qdisc of ${link.name}`)
}

/** Where filters on a link's ingress hang: the ingress qdisc, or clsact's ingress hook. */
const ingressParent = (socket: RouteSocket, link: LinkInfo, operation: string): number => {
  const qdisc = listQdiscs(socket, link).find((q) => q.kind === "ingress" || q.kind === "clsact")
  if (!qdisc) throw new KernelCallFailed(kernelError(operation, 22, `${link.name} has no ingress or clsact qdisc`))
  return qdisc.kind === "clsact" ? CLSACT_INGRESS : INGRESS_HANDLE
}

/** u32 selector with one key that matches every packet (value 0 under mask 0). */
const matchAll = (): Uint8Array => {
  const sel = new Uint8Array(16 + 16)
  sel[0] = TC_U32_TERMINAL
  sel[2] = 1 // nkeys
  return sel
}

/** struct tc_mirred: egress redirect to `toIndex`, packet stolen from the source. */
const mirredRedirect = (toIndex: number): Uint8Array => {
  const parms = new Uint8Array(28)
  const view = new DataView(parms.buffer)
  view.setInt32(8, TC_ACT_STOLEN, true)
  view.setInt32(20, TCA_EGRESS_REDIR, true)
  view.setUint32(24, toIndex, true)
  return parms
}

const filterInfo = (): number => ((REDIRECT_PRIORITY << 16) | ((ETH_P_ALL & 0xff) << 8) | (ETH_P_ALL >> 8)) >>> 0

/** `tc filter add dev LINK ingress protocol all u32 match u32 0 0 action mirred egress redirect dev TO` */
export const addRedirect = (socket: RouteSocket, link: LinkInfo, to: LinkInfo): void => {
  const parent = ingressParent(socket, link, "addRedirect")
  const attributes = new AttributeWriter()
    .string(TCA_KIND, "u32")
    .nested(TCA_OPTIONS, (options) => {
      options.bytes(TCA_U32_SEL, matchAll())
      options.nested(TCA_U32_ACT, (actions) => {
        actions.nested(1, (action) => {
          action.string(TCA_ACT_KIND, "mirred")
          action.nested(TCA_ACT_OPTIONS, (mirred) => mirred.bytes(TCA_MIRRED_PARMS, mirredRedirect(to.index)))
        })
      })
    })
  socket.request(
    "addRedirect",
    RTM_NEWTFILTER,
    NLM_F_CREATE | NLM_F_EXCL,
    tcmsg(link.index, 0, parent, filterInfo()),
    attributes.finish(),
    `${link.name} → ${to.name}`
  )
}

/** ifindexes that u32 filters on the link's ingress redirect to. */
const redirectTargets = (socket: RouteSocket, link: LinkInfo, parent: number): Array<number> => {
  const targets: Array<number> = []
  for (const message of socket.dump("listRedirects", RTM_GETTFILTER, tcmsg(link.index, 0, parent))) {
    if (message.type !== RTM_NEWTFILTER) continue
    const filter = readTcmsg(message.payload)
    const options = filter.attributes.get(TCA_OPTIONS)
    const actions = options ? decodeAttributes(options).get(TCA_U32_ACT) : undefined
    if (!actions) continue
    for (const action of decodeAttributes(actions).values()) {
      const fields = decodeAttributes(action)
      if (attrString(fields, TCA_ACT_KIND) !== "mirred") continue
      const mirredOptions = fields.get(TCA_ACT_OPTIONS)
      const parms = mirredOptions ? decodeAttributes(mirredOptions).get(TCA_MIRRED_PARMS) : undefined
      if (parms && parms.byteLength >= 28) targets.push(new DataView(parms.buffer, parms.byteOffset).getUint32(24, true))
    }
  }
  return targets
}

/** Every ingress redirect in the namespace: one qdisc dump, then the filters of links with an ingress hook. */
export const listRedirects = (socket: RouteSocket, links: ReadonlyArray<LinkInfo>): Array<RedirectFilter> => {
  const names = new Map(links.map((link) => [link.index, link.name]))
  const qdiscs = qdiscsByIndex(socket, names)
  const redirects: Array<RedirectFilter> = []
  for (const link of links) {
    const qdisc = qdiscs.get(link.index)?.find((q) => q.kind === "ingress" || q.kind === "clsact")
    if (!qdisc) continue
    const parent = qdisc.kind === "clsact" ? CLSACT_INGRESS : INGRESS_HANDLE
    for (const target of redirectTargets(socket, link, parent)) {
      const toLink = names.get(target)
      if (toLink !== undefined) redirects.push({ link: link.name, toLink })
    }
  }
  return redirects
}

/** The ingress redirects of one link; target names looked up by index (unknown ones left out). */
export const listRedirectsFrom = (
  socket: RouteSocket,
  link: LinkInfo,
  nameOf: (index: number) => string | undefined
): Array<RedirectFilter> => {
  const qdisc = listQdiscs(socket, link).find((q) => q.kind === "ingress" || q.kind === "clsact")
  if (!qdisc) return []
  const redirects: Array<RedirectFilter> = []
  for (const target of redirectTargets(socket, link, qdisc.kind === "clsact" ? CLSACT_INGRESS : INGRESS_HANDLE)) {
    const toLink = nameOf(target)
    if (toLink !== undefined) redirects.push({ link: link.name, toLink })
  }
  return redirects
}

/** Removes tscni's redirect filter (its whole priority) from the link's ingress. */
export const deleteRedirect = (socket: RouteSocket, link: LinkInfo, to: LinkInfo): void => {
  const parent = ingressParent(socket, link, "deleteRedirect")
  if (!redirectTargets(socket, link, parent).includes(to.index)) {
    throw new KernelCallFailed(kernelError("deleteRedirect", 2, `${link.name} → ${to.name}`))
  }
  socket.request("deleteRedirect", RTM_DELTFILTER, 0, tcmsg(link.index, 0, parent, filterInfo()), undefined, link.name)
}
