/**
 * The conflist to install: a file as given, or a template with the node's pod CIDR filled
 * in. Everything here is checked before any step runs.
 */
import { basename } from "node:path"
import { Effect } from "effect"
import { formatCidr, hasHostBits, networkOf, parseCidr } from "@tscni/ip"
import { decodeNetConfList, isSupportedVersion, type NetConfList, SUPPORTED_VERSIONS } from "@tscni/spec"
import { type InstallError, usageError } from "./errors.ts"

/** The placeholder a template carries where the pod CIDR goes. */
export const POD_CIDR_PLACEHOLDER = "__POD_CIDR__"

/** The suffix a template's file name has and the installed conflist's does not. */
export const TEMPLATE_SUFFIX = ".template"

/**
 * A pod CIDR as host-local wants it: `address/prefix`, IPv4 or IPv6, with no host bits
 * (`10.244.1.5/24` is refused, naming `10.244.1.0/24`). Returns the canonical form.
 */
export const validatePodCidr = (text: string): Effect.Effect<string, InstallError> => {
  const cidr = parseCidr(text.trim())
  if (cidr === undefined) {
    return Effect.fail(usageError(`pod CIDR ${JSON.stringify(text)} is not a CIDR (address/prefix, e.g. 10.244.1.0/24)`))
  }
  if (hasHostBits(cidr)) {
    return Effect.fail(usageError(`pod CIDR ${text} has host bits set; did you mean ${formatCidr(networkOf(cidr))}?`))
  }
  return Effect.succeed(formatCidr(cidr))
}

/** Fills the pod CIDR into a template; a template without the placeholder, or with another one left, is refused. */
export const renderTemplate = (template: string, podCidr: string, file = "template"): Effect.Effect<string, InstallError> => {
  if (!template.includes(POD_CIDR_PLACEHOLDER)) {
    return Effect.fail(usageError(`${file} has no ${POD_CIDR_PLACEHOLDER} placeholder`, file))
  }
  const rendered = template.split(POD_CIDR_PLACEHOLDER).join(podCidr)
  const leftover = /__[A-Z][A-Z0-9_]*__/.exec(rendered)
  if (leftover !== null) {
    return Effect.fail(usageError(`${file} has a placeholder this installer does not fill: ${leftover[0]}`, file))
  }
  return Effect.succeed(rendered)
}

/** Parses and validates a conflist's text as libcni would load it, and a version tscni supports. */
export const validateConflist = (text: string, file: string): Effect.Effect<NetConfList, InstallError> =>
  Effect.try({
    try: (): unknown => JSON.parse(text),
    catch: (error) => usageError(`${file} is not valid JSON: ${error instanceof Error ? error.message : String(error)}`, file)
  }).pipe(
    Effect.flatMap((json) =>
      decodeNetConfList(json).pipe(
        Effect.mapError((error) =>
          usageError(`${file} is not a valid conflist: ${error.msg}${error.details === undefined ? "" : `: ${error.details}`}`, file)
        )
      )
    ),
    Effect.flatMap((list) =>
      isSupportedVersion(list.cniVersion)
        ? Effect.succeed(list)
        : Effect.fail(usageError(`${file}: cniVersion ${list.cniVersion} is not one of ${SUPPORTED_VERSIONS.join(", ")}`, file))
    )
  )

/** Every plugin binary a conflist will make the runtime exec: each `type` and each `ipam.type`. */
export const pluginTypes = (list: NetConfList): ReadonlyArray<string> => {
  const types = new Set<string>()
  for (const plugin of list.plugins) {
    types.add(plugin.type)
    const ipam = plugin.ipam
    if (typeof ipam === "object" && ipam !== null && "type" in ipam && typeof ipam.type === "string") types.add(ipam.type)
  }
  return [...types]
}

/** The installed name of a template: `10-tscni.conflist.template` → `10-tscni.conflist`. */
export const renderedName = (templatePath: string): string => {
  const name = basename(templatePath)
  return name.endsWith(TEMPLATE_SUFFIX) ? name.slice(0, -TEMPLATE_SUFFIX.length) : name
}

/** libcni reads lists only from `*.conflist`; any other name would be read as one plugin's config. */
export const requireConflistName = (name: string, file: string): Effect.Effect<string, InstallError> =>
  name.endsWith(".conflist") && !name.startsWith(".")
    ? Effect.succeed(name)
    : Effect.fail(usageError(`the installed file name ${JSON.stringify(name)} must end in .conflist (from ${file})`, file))
