import { Effect, Layer } from "effect"
import { Backend, BackendError, type BackendShape, type BackendErrorReason, type LinkInfo } from "@tscni/backend"
import { KernelCallFailed } from "./errors.ts"
import { isNetns } from "./netns.ts"
import { routeSocket } from "./netlink/socket.ts"
import * as address from "./rtnl/address.ts"
import * as link from "./rtnl/link.ts"
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

const findLink = (netns: string, name: string): LinkInfo => link.getLink(routeSocket(netns), netns, name)

/** The Backend on the real kernel: rtnetlink over bun:ffi, /proc/sys, nftables. */
export const makeLinuxBackend = (): BackendShape => ({
  createNetns: () => notYet("createNetns"),
  deleteNetns: () => notYet("deleteNetns"),
  netnsExists: (path) => kernelCall("netnsExists", () => isNetns(path)),

  listLinks: (netns) => kernelCall("listLinks", () => link.listLinks(routeSocket(netns), netns)),
  getLink: (netns, name) => kernelCall("getLink", () => findLink(netns, name)),
  createVeth: () => notYet("createVeth"),
  createLink: () => notYet("createLink"),
  deleteLink: () => notYet("deleteLink"),
  setLink: (netns, name, changes) =>
    kernelCall("setLink", () => {
      if (changes.hairpin !== undefined || changes.isolated !== undefined) {
        throw new KernelCallFailed(
          new BackendError({ operation: "setLink", reason: "Unsupported", message: "bridge port flags are not implemented yet" })
        )
      }
      const target = findLink(netns, name)
      const master = typeof changes.master === "string" ? findLink(netns, changes.master).index : undefined
      link.setLink(routeSocket(netns), target, changes, master)
      return findLink(netns, name)
    }),
  moveLink: () => notYet("moveLink"),

  listAddresses: (netns, linkName) =>
    kernelCall("listAddresses", () => {
      const socket = routeSocket(netns)
      return address.listAddresses(socket, netns, link.listLinks(socket, netns), linkName)
    }),
  addAddress: () => notYet("addAddress"),
  deleteAddress: () => notYet("deleteAddress"),

  listRoutes: () => notYet("listRoutes"),
  addRoute: () => notYet("addRoute"),
  deleteRoute: () => notYet("deleteRoute"),

  readSysctl: (netns, key) => kernelCall("readSysctl", () => sysctl.readSysctl(netns, key)),
  writeSysctl: (netns, key, value) => kernelCall("writeSysctl", () => sysctl.writeSysctl(netns, key, value)),

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
