import { Effect, Schema } from "effect"
import { isAssignableMac, parseMac } from "@tscni/ip"
import { type CniError, invalidEnvironment } from "@tscni/spec"

/** A MAC an interface can be given (six hex octets, not multicast, not all zeros), lower case. */
export const interfaceMac = (text: string): string | undefined => {
  const mac = parseMac(text)
  return mac !== undefined && isAssignableMac(mac) ? mac : undefined
}

/** The same check for config keys (`runtimeConfig.mac`, `args.cni.mac`, a plugin's `mac`). */
export const InterfaceMac = Schema.String.pipe(
  Schema.check(
    Schema.makeFilter((text: string) => interfaceMac(text) !== undefined || "not a unicast MAC address (xx:xx:xx:xx:xx:xx)")
  )
)

/**
 * `MAC=` from CNI_ARGS (podman's `--mac-address`), validated: a bad one is code 4 naming
 * CNI_ARGS, like every other problem with the environment. Empty means none.
 */
export const macFromCniArgs = (args: ReadonlyArray<readonly [string, string]>): Effect.Effect<string | undefined, CniError> => {
  const value = args.find(([key]) => key === "MAC")?.[1]
  if (value === undefined || value === "") return Effect.succeed(undefined)
  const mac = interfaceMac(value)
  return mac !== undefined
    ? Effect.succeed(mac)
    : Effect.fail(invalidEnvironment("CNI_ARGS", `MAC '${value}' is not a unicast MAC address`))
}
