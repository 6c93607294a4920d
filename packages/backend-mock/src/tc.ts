import type { AddQdiscRequest, BackendError, NetnsPath, QdiscInfo, RedirectFilter } from "@tscni/backend"
import { Effect } from "effect"
import {
  fail,
  type KernelState,
  linkName,
  type NetnsState,
  type QdiscState,
  requireLink,
  requireNetns
} from "./state.ts"

/**
 * A qdisc as `tc` reports it. The link's default root qdisc (noqueue, noop, fq_codel, …)
 * is not modelled: only qdiscs someone added are listed.
 */
export const toQdiscInfo = (ns: NetnsState, q: QdiscState): QdiscInfo => ({
  link: linkName(ns, q.linkIndex),
  kind: q.kind,
  parent: q.parent,
  handle: q.parent === "root" ? "1:" : "ffff:",
  ...(q.tbf === undefined ? {} : { tbf: { ...q.tbf } })
})

/** A redirect as listRedirects reports it, by link names. */
export const toRedirectFilter = (ns: NetnsState, r: { linkIndex: number; toLinkIndex: number }): RedirectFilter => ({
  link: linkName(ns, r.linkIndex),
  toLink: linkName(ns, r.toLinkIndex)
})

const validateRequest = (request: AddQdiscRequest): string | undefined => {
  if (request.kind === "tbf") {
    if (request.parent !== "root") return "tbf must be the root qdisc"
    const tbf = request.tbf
    if (tbf === undefined) return "tbf needs rate, burst and limit"
    const positive = [tbf.rate, tbf.burst, tbf.limit].every((n) => Number.isFinite(n) && n > 0)
    return positive ? undefined : "tbf rate, burst and limit must be positive"
  }
  if (request.kind === "ingress" || request.kind === "clsact") {
    return request.parent === "ingress" ? undefined : `${request.kind} attaches at parent ingress`
  }
  return `unsupported qdisc kind ${String(request.kind)}`
}

/** Traffic-control operations of the mock: one root and one ingress/clsact qdisc per link, redirects. */
export const tcOperations = (state: KernelState) => ({
  listQdiscs: (netns: NetnsPath, link: string): Effect.Effect<ReadonlyArray<QdiscInfo>, BackendError> =>
    Effect.gen(function* () {
      const ns = yield* requireNetns(state, "listQdiscs", netns)
      const target = yield* requireLink(ns, "listQdiscs", link)
      return ns.qdiscs.filter((q) => q.linkIndex === target.index).map((q) => toQdiscInfo(ns, q))
    }),

  addQdisc: (netns: NetnsPath, request: AddQdiscRequest): Effect.Effect<void, BackendError> =>
    Effect.gen(function* () {
      const op = "addQdisc"
      const ns = yield* requireNetns(state, op, netns)
      const target = yield* requireLink(ns, op, request.link)
      const problem = validateRequest(request)
      if (problem !== undefined) return yield* fail(op, "Invalid", problem, "EINVAL")
      if (ns.qdiscs.some((q) => q.linkIndex === target.index && q.parent === request.parent)) {
        return yield* fail(op, "AlreadyExists", `${target.name} already has a ${request.parent} qdisc`, "EEXIST")
      }
      ns.qdiscs.push({
        linkIndex: target.index,
        kind: request.kind,
        parent: request.parent,
        tbf: request.tbf === undefined ? undefined : { ...request.tbf }
      })
    }),

  deleteQdisc: (netns: NetnsPath, link: string, parent: "root" | "ingress"): Effect.Effect<void, BackendError> =>
    Effect.gen(function* () {
      const op = "deleteQdisc"
      const ns = yield* requireNetns(state, op, netns)
      const target = yield* requireLink(ns, op, link)
      const existing = ns.qdiscs.find((q) => q.linkIndex === target.index && q.parent === parent)
      if (existing === undefined) return yield* fail(op, "NotFound", `${target.name} has no ${parent} qdisc`, "ENOENT")
      ns.qdiscs = ns.qdiscs.filter((q) => q !== existing)
      // filters hang off the ingress qdisc and go with it
      if (parent === "ingress") ns.redirects = ns.redirects.filter((r) => r.linkIndex !== target.index)
    }),

  listRedirects: (netns: NetnsPath, link?: string): Effect.Effect<ReadonlyArray<RedirectFilter>, BackendError> =>
    Effect.gen(function* () {
      const op = "listRedirects"
      const ns = yield* requireNetns(state, op, netns)
      const from = link === undefined ? undefined : (yield* requireLink(ns, op, link)).index
      return ns.redirects.filter((r) => from === undefined || r.linkIndex === from).map((r) => toRedirectFilter(ns, r))
    }),

  addRedirect: (netns: NetnsPath, filter: RedirectFilter): Effect.Effect<void, BackendError> =>
    Effect.gen(function* () {
      const op = "addRedirect"
      const ns = yield* requireNetns(state, op, netns)
      const from = yield* requireLink(ns, op, filter.link)
      const to = yield* requireLink(ns, op, filter.toLink)
      if (!ns.qdiscs.some((q) => q.linkIndex === from.index && q.parent === "ingress")) {
        return yield* fail(op, "Invalid", `${from.name} has no ingress or clsact qdisc`, "EINVAL")
      }
      if (ns.redirects.some((r) => r.linkIndex === from.index && r.toLinkIndex === to.index)) {
        return yield* fail(op, "AlreadyExists", `${from.name} already redirects to ${to.name}`, "EEXIST")
      }
      ns.redirects.push({ linkIndex: from.index, toLinkIndex: to.index })
    }),

  deleteRedirect: (netns: NetnsPath, filter: RedirectFilter): Effect.Effect<void, BackendError> =>
    Effect.gen(function* () {
      const op = "deleteRedirect"
      const ns = yield* requireNetns(state, op, netns)
      const from = yield* requireLink(ns, op, filter.link)
      const to = yield* requireLink(ns, op, filter.toLink)
      const existing = ns.redirects.find((r) => r.linkIndex === from.index && r.toLinkIndex === to.index)
      if (existing === undefined) {
        return yield* fail(op, "NotFound", `${from.name} does not redirect to ${to.name}`, "ENOENT")
      }
      ns.redirects = ns.redirects.filter((r) => r !== existing)
    })
})
