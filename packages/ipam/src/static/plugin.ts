/**
 * static: hands out exactly the addresses it is given. Nothing is allocated, so DEL, GC
 * and STATUS have nothing to do; CHECK verifies prevResult still carries the addresses.
 */
import { Effect } from "effect"
import { formatCidr, formatIp, parseCidr, parseIp, sameIp } from "@tscni/ip"
import type { PluginDefinition, PluginRequest } from "@tscni/skel"
import type { Result } from "@tscni/spec"
import { checkFailed } from "../errors.ts"
import { loadStaticConfig } from "./config.ts"

const NAME = "static"

const add = (request: PluginRequest) =>
  Effect.gen(function*() {
    const config = yield* loadStaticConfig(request)
    const result: Result = {
      cniVersion: request.conf.cniVersion,
      ips: config.addresses.map((entry) => ({
        address: formatCidr(entry.address),
        ...(entry.gateway === undefined ? {} : { gateway: formatIp(entry.gateway) })
      })),
      ...(config.routes.length > 0 ? { routes: config.routes } : {}),
      ...(config.dns === undefined ? {} : { dns: config.dns })
    }
    return result
  })

/** Every configured address is in prevResult, with the configured gateway when there is one. */
const check = (request: PluginRequest) =>
  Effect.gen(function*() {
    const config = yield* loadStaticConfig(request)
    const reported = (request.prevResult?.ips ?? []).map((entry) => ({
      ip: parseCidr(entry.address)?.ip,
      gateway: entry.gateway
    }))
    for (const entry of config.addresses) {
      const found = reported.find((item) => item.ip !== undefined && sameIp(item.ip, entry.address.ip))
      if (found === undefined) {
        return yield* checkFailed(NAME, `${formatCidr(entry.address)} (${entry.field}) is missing from prevResult`)
      }
      const reportedGateway = found.gateway === undefined ? undefined : parseIp(found.gateway)
      if (entry.gateway !== undefined && (reportedGateway === undefined || !sameIp(reportedGateway, entry.gateway))) {
        return yield* checkFailed(
          NAME,
          `${formatCidr(entry.address)} has gateway ${found.gateway ?? "none"} in prevResult, expected ${formatIp(entry.gateway)}`
        )
      }
    }
  })

/** static as a PluginDefinition: the binary runs it, and other plugins can run it in-process. */
export const staticPlugin: PluginDefinition<never> = {
  name: NAME,
  cniArgs: ["IP", "GATEWAY"],
  add,
  check,
  // nothing was allocated, so there is nothing to release or collect (the reference agrees)
  del: () => Effect.void,
  gc: () => Effect.void,
  status: () => Effect.void
}
