import { Effect, Layer } from "effect"
import { Backend, BackendError, type BackendShape, type BackendErrorReason, type LinkInfo } from "@tscni/backend"
import { KernelCallFailed } from "./errors.ts"
import * as netns from "./netns.ts"
import { routeSocket } from "./netlink/socket.ts"
import * as address from "./rtnl/address.ts"
import * as link from "./rtnl/link.ts"
import * as route from "./rtnl/route.ts"
import * as sysctl from "./sysctl.ts"

const FS_REASONS: Record<string, BackendErrorReason> = {
  ENOENT: "NotFound",
  EACCES: "PermissionDenied",
  EPERM: "PermissionDenied",
  EINVAL: "Invalid",
  EBUSY: "Busy",
  EEXIST: "AlreadyExists"
}

const errorCode = (error: unknown): string | undefined => {
  if (typeof error !== "object" || error === null || !("code" in error)) return undefined
  return typeof error.code === "string" ? error.code : undefined
}

/** Runs synchronous kernel work and turns whatever it throws into a BackendError. */
const kernelCall = <A>(operation: string, work: () => A): Effect.Effect<A, BackendError> =>
  Effect.try({
    try: work,
    catch: (error) => {
      if (error instanceof KernelCallFailed) return error.error
      const code = errorCode(error)
      return new BackendError({
        operation,
        reason: (code && FS_REASONS[code]) || "Unknown",
        ...(code ? { errno: code } : {}),
        message: `${operation}: ${error instanceof Error ? error.message : String(error)}`
      })
    }
  })

/** Operations that land with the rest of the rtnetlink work (issue 3) fail plainly, never silently. */
const notYet = (operation: string): Effect.Effect<never, BackendError> =>
  Effect.fail(
    new BackendError({ operation, reason: "Unsupported", message: `${operation} is not implemented by LinuxBackend yet` })
  )

const findLink = (ns: string, name: string): LinkInfo => link.getLink(routeSocket(ns), ns, name)

const socketOf = routeSocket

/** The Backend on the real kernel: rtnetlink over bun:ffi, /proc/sys, nftables. */
export const makeLinuxBackend = (): BackendShape => ({
  createNetns: (name) => kernelCall("createNetns", () => netns.createNetns(name)),
  deleteNetns: (path) => kernelCall("deleteNetns", () => netns.deleteNetns(path)),
  netnsExists: (path) => kernelCall("netnsExists", () => netns.isNetns(path)),

  listLinks: (ns) => kernelCall("listLinks", () => link.listLinks(socketOf(ns), ns)),
  getLink: (ns, name) => kernelCall("getLink", () => findLink(ns, name)),
  createVeth: (request) =>
    kernelCall("createVeth", () => {
      netns.withNetnsFd(request.peerNetns, (peerFd) =>
        link.createLink(
          socketOf(request.netns),
          "veth",
          { name: request.name, mtu: request.mtu, mac: request.mac },
          { name: request.peerName, mtu: request.mtu, mac: request.peerMac, netnsFd: peerFd }
        )
      )
      return { link: findLink(request.netns, request.name), peer: findLink(request.peerNetns, request.peerName) }
    }),
  createLink: (request) =>
    kernelCall("createLink", () => {
      link.createLink(socketOf(request.netns), request.kind, { name: request.name, mtu: request.mtu, mac: request.mac })
      return findLink(request.netns, request.name)
    }),
  deleteLink: (ns, name) => kernelCall("deleteLink", () => link.deleteLink(socketOf(ns), findLink(ns, name).index, name)),
  setLink: (ns, name, changes) =>
    kernelCall("setLink", () => {
      const target = findLink(ns, name)
      const master = typeof changes.master === "string" ? findLink(ns, changes.master).index : undefined
      link.setLink(socketOf(ns), target, changes, master)
      if (changes.hairpin !== undefined || changes.isolated !== undefined) {
        link.setBridgePort(socketOf(ns), target, { hairpin: changes.hairpin, isolated: changes.isolated })
      }
      return findLink(ns, name)
    }),
  moveLink: (ns, name, toNetns, newName) =>
    kernelCall("moveLink", () => {
      const target = findLink(ns, name)
      netns.withNetnsFd(toNetns, (fd) => link.moveLink(socketOf(ns), target, fd, newName))
      return findLink(toNetns, newName ?? name)
    }),

  listAddresses: (ns, linkName) =>
    kernelCall("listAddresses", () => address.listAddresses(socketOf(ns), ns, link.listLinks(socketOf(ns), ns), linkName)),
  addAddress: (ns, linkName, cidr) =>
    kernelCall("addAddress", () => address.addAddress(socketOf(ns), findLink(ns, linkName), cidr)),
  deleteAddress: (ns, linkName, cidr) =>
    kernelCall("deleteAddress", () => address.deleteAddress(socketOf(ns), findLink(ns, linkName), cidr)),

  listRoutes: (ns) => kernelCall("listRoutes", () => route.listRoutes(socketOf(ns), link.listLinks(socketOf(ns), ns))),
  addRoute: (ns, entry) =>
    kernelCall("addRoute", () =>
      route.addRoute(socketOf(ns), entry, entry.link !== undefined ? findLink(ns, entry.link).index : undefined)
    ),
  deleteRoute: (ns, entry) =>
    kernelCall("deleteRoute", () =>
      route.deleteRoute(socketOf(ns), entry, entry.link !== undefined ? findLink(ns, entry.link).index : undefined)
    ),

  readSysctl: (ns, key) => kernelCall("readSysctl", () => sysctl.readSysctl(ns, key)),
  writeSysctl: (ns, key, value) => kernelCall("writeSysctl", () => sysctl.writeSysctl(ns, key, value)),

  listQdiscs: () => notYet("listQdiscs"),
  addQdisc: () => notYet("addQdisc"),
  deleteQdisc: () => notYet("deleteQdisc"),
  listRedirects: () => notYet("listRedirects"),
  addRedirect: () => notYet("addRedirect"),
  deleteRedirect: () => notYet("deleteRedirect"),

  addFilterRules: () => notYet("addFilterRules"),
  deleteFilterRules: () => notYet("deleteFilterRules"),
  listFilterRules: () => notYet("listFilterRules")
})

export const layer: Layer.Layer<Backend> = Layer.sync(Backend)(makeLinuxBackend)
