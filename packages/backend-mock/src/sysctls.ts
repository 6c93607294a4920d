import { type BackendError, canonicalSysctlKey, type NetnsPath, sysctlSegments } from "@tscni/backend"
import { Effect } from "effect"
import { dropIpv6 } from "./lifecycle.ts"
import { fail, findLink, type KernelState, requireNetns } from "./state.ts"

/** The interface a `net.ipv6.conf.<ifname>.disable_ipv6` key names, in either key form. */
const disableIpv6Link = (key: string): string | undefined => {
  const [net, ipv6, conf, ifname, leaf, ...rest] = sysctlSegments(key)
  return net === "net" && ipv6 === "ipv6" && conf === "conf" && leaf === "disable_ipv6" && rest.length === 0 ? ifname : undefined
}

/** Sysctl operations of the mock: only keys that exist can be read or written (integers only). */
export const sysctlOperations = (state: KernelState) => ({
  readSysctl: (netns: NetnsPath, key: string): Effect.Effect<string, BackendError> =>
    Effect.gen(function* () {
      const ns = yield* requireNetns(state, "readSysctl", netns)
      const value = ns.sysctls.get(canonicalSysctlKey(key))
      if (value === undefined) return yield* fail("readSysctl", "NotFound", `no sysctl ${key} in ${netns}`, "ENOENT")
      return value
    }),

  writeSysctl: (netns: NetnsPath, key: string, value: string): Effect.Effect<string, BackendError> =>
    Effect.gen(function* () {
      const op = "writeSysctl"
      const ns = yield* requireNetns(state, op, netns)
      const previous = ns.sysctls.get(canonicalSysctlKey(key))
      if (previous === undefined) return yield* fail(op, "NotFound", `no sysctl ${key} in ${netns}`, "ENOENT")
      // every sysctl the mock knows is an integer; the kernel stores and prints it normalised
      if (!/^\s*-?[0-9]+\s*$/.test(value)) {
        return yield* fail(op, "Invalid", `invalid value ${JSON.stringify(value)} for ${key}`, "EINVAL")
      }
      const normalised = String(Number.parseInt(value, 10))
      ns.sysctls.set(canonicalSysctlKey(key), normalised)
      const ifname = disableIpv6Link(key)
      const link = ifname === undefined ? undefined : findLink(ns, ifname)
      if (link !== undefined && normalised !== "0") dropIpv6(ns, link)
      return previous
    })
})
