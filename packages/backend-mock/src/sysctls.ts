import type { BackendError, NetnsPath } from "@tscni/backend"
import { Effect } from "effect"
import { dropIpv6 } from "./lifecycle.ts"
import { fail, findLink, type KernelState, requireNetns } from "./state.ts"

const DISABLE_IPV6 = /^net\.ipv6\.conf\.(.+)\.disable_ipv6$/

/** Sysctl operations of the mock: only keys that exist can be read or written (integers only). */
export const sysctlOperations = (state: KernelState) => ({
  readSysctl: (netns: NetnsPath, key: string): Effect.Effect<string, BackendError> =>
    Effect.gen(function* () {
      const ns = yield* requireNetns(state, "readSysctl", netns)
      const value = ns.sysctls.get(key)
      if (value === undefined) return yield* fail("readSysctl", "NotFound", `no sysctl ${key} in ${netns}`, "ENOENT")
      return value
    }),

  writeSysctl: (netns: NetnsPath, key: string, value: string): Effect.Effect<string, BackendError> =>
    Effect.gen(function* () {
      const op = "writeSysctl"
      const ns = yield* requireNetns(state, op, netns)
      const previous = ns.sysctls.get(key)
      if (previous === undefined) return yield* fail(op, "NotFound", `no sysctl ${key} in ${netns}`, "ENOENT")
      // every sysctl the mock knows is an integer; the kernel stores and prints it normalised
      if (!/^\s*-?[0-9]+\s*$/.test(value)) {
        return yield* fail(op, "Invalid", `invalid value ${JSON.stringify(value)} for ${key}`, "EINVAL")
      }
      const normalised = String(Number.parseInt(value, 10))
      ns.sysctls.set(key, normalised)
      const ifname = DISABLE_IPV6.exec(key)?.[1]
      const link = ifname === undefined ? undefined : findLink(ns, ifname)
      if (link !== undefined && normalised !== "0") dropIpv6(ns, link)
      return previous
    })
})
