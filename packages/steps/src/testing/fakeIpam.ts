import type { ExecOutput, ExecRequest } from "../PluginExec.ts"

/** A host-local look-alike over one IPv4 /24, one IPv6 /64, or both: allocations and the knobs tests turn. */
export interface FakeIpam {
  readonly plugin: (request: ExecRequest) => ExecOutput
  /** `containerId/ifname` → its addresses (CIDR), comma-separated when it has one per family (IPv4 first) */
  readonly allocations: () => ReadonlyMap<string, string>
  /** Drops an allocation behind the plugin's back (a "manual change" for check tests). */
  readonly forget: (containerId: string, ifname: string) => void
  /** Makes the next ADDs fail with this CNI error (e.g. range exhausted) until cleared. */
  readonly failAdd: (error: { readonly code: number; readonly msg: string } | undefined) => void
}

/** Which ranges the fake hands addresses out of; at least one family. */
export interface FakeIpamRanges {
  /** the IPv4 /24's first three octets ("10.88.0"): hosts `.2`, `.3`, …, gateway `.1` */
  readonly v4?: string
  /** the IPv6 /64's prefix, ending in "::" ("fd00:88::"): hosts `::2`, `::3`, …, gateway `::1` */
  readonly v6?: string
  /** whether each IP names its family's gateway (default true), as host-local does */
  readonly gateways?: boolean
}

const ok = (stdout: string): ExecOutput => ({ exitCode: 0, stdout, stderr: "" })
const err = (code: number, msg: string, cniVersion: string): ExecOutput => ({
  exitCode: 1,
  stdout: JSON.stringify({ cniVersion, code, msg }),
  stderr: ""
})

const versionOf = (stdin: string): string => {
  const config: unknown = JSON.parse(stdin)
  return typeof config === "object" && config !== null && "cniVersion" in config &&
      typeof config.cniVersion === "string"
    ? config.cniVersion
    : "1.0.0"
}

interface Family {
  readonly version: "4" | "6"
  readonly address: (host: number) => string
  readonly gateway: string
  readonly defaultRoute: string
}

const familiesOf = (ranges: FakeIpamRanges): ReadonlyArray<Family> => {
  const families: Array<Family> = []
  if (ranges.v4 !== undefined) {
    const prefix = ranges.v4
    families.push({ version: "4", address: (host) => `${prefix}.${host}/24`, gateway: `${prefix}.1`, defaultRoute: "0.0.0.0/0" })
  }
  if (ranges.v6 !== undefined) {
    const prefix = ranges.v6
    if (!prefix.endsWith("::")) throw new Error(`makeFakeIpam: the IPv6 prefix must end in "::", got ${prefix}`)
    families.push({ version: "6", address: (host) => `${prefix}${host.toString(16)}/64`, gateway: `${prefix}1`, defaultRoute: "::/0" })
  }
  if (families.length === 0) throw new Error("makeFakeIpam: no range given")
  return families
}

/**
 * An in-memory IPAM plugin for unit tests of delegation: ADD hands out host 2, 3, … per
 * container/ifname (idempotent; one address per configured family, the same host number
 * in each), with each family's gateway and default route; DEL frees (tolerant); CHECK
 * fails when the allocation is missing. Results are in the config's cniVersion. A string
 * is the IPv4 prefix alone (`makeFakeIpam("10.77.0")`).
 */
export const makeFakeIpam = (ranges: string | FakeIpamRanges = "10.88.0"): FakeIpam => {
  const { gateways = true, ...rest } = typeof ranges === "string" ? { v4: ranges } : ranges
  const families = familiesOf(rest)
  /** `containerId/ifname` → host number */
  const hosts = new Map<string, number>()
  let addFailure: { readonly code: number; readonly msg: string } | undefined
  const addressesOf = (host: number): string => families.map((family) => family.address(host)).join(",")
  const plugin = (request: ExecRequest): ExecOutput => {
    const cniVersion = versionOf(request.stdin)
    const key = `${request.env.CNI_CONTAINERID ?? ""}/${request.env.CNI_IFNAME ?? ""}`
    switch (request.env.CNI_COMMAND) {
      case "ADD": {
        if (addFailure !== undefined) return err(addFailure.code, addFailure.msg, cniVersion)
        let host = hosts.get(key)
        if (host === undefined) {
          const used = new Set(hosts.values())
          host = 2
          while (used.has(host)) host++
          hosts.set(key, host)
        }
        const legacy = cniVersion.startsWith("0.")
        const allocated = host
        return ok(JSON.stringify({
          cniVersion,
          ips: families.map((family) => ({
            ...(legacy ? { version: family.version } : {}),
            address: family.address(allocated),
            ...(gateways ? { gateway: family.gateway } : {})
          })),
          routes: families.map((family) => ({ dst: family.defaultRoute })),
          dns: {}
        }))
      }
      case "DEL":
        hosts.delete(key)
        return ok("")
      case "CHECK":
        return hosts.has(key) ? ok("") : err(999, `fake-ipam: no address for ${key}`, cniVersion)
      case "GC": {
        const config = JSON.parse(request.stdin) as { "cni.dev/valid-attachments"?: Array<{ containerID: string; ifname: string }> }
        const valid = new Set((config["cni.dev/valid-attachments"] ?? []).map((a) => `${a.containerID}/${a.ifname}`))
        for (const held of [...hosts.keys()]) if (!valid.has(held)) hosts.delete(held)
        return ok("")
      }
      case "STATUS":
        return ok("")
      default:
        return err(4, `fake-ipam: unknown CNI_COMMAND ${String(request.env.CNI_COMMAND)}`, cniVersion)
    }
  }
  return {
    plugin,
    allocations: () => new Map([...hosts].map(([key, host]) => [key, addressesOf(host)])),
    forget: (containerId, ifname) => {
      hosts.delete(`${containerId}/${ifname}`)
    },
    failAdd: (error) => {
      addFailure = error
    }
  }
}
