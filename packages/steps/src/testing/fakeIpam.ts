import type { ExecOutput, ExecRequest } from "../PluginExec.ts"

/** A host-local look-alike over one /24: allocations and the knobs tests turn. */
export interface FakeIpam {
  readonly plugin: (request: ExecRequest) => ExecOutput
  /** `containerId/ifname` → address (CIDR) */
  readonly allocations: () => ReadonlyMap<string, string>
  /** Drops an allocation behind the plugin's back (a "manual change" for check tests). */
  readonly forget: (containerId: string, ifname: string) => void
  /** Makes the next ADDs fail with this CNI error (e.g. range exhausted) until cleared. */
  readonly failAdd: (error: { readonly code: number; readonly msg: string } | undefined) => void
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

/**
 * An in-memory IPAM plugin for unit tests of delegation: ADD hands out
 * `<prefix>.2`, `<prefix>.3`, … per container/ifname (idempotent), DEL frees (tolerant),
 * CHECK fails when the allocation is missing. Results are in the config's cniVersion.
 */
export const makeFakeIpam = (prefix = "10.88.0"): FakeIpam => {
  const allocations = new Map<string, string>()
  let addFailure: { readonly code: number; readonly msg: string } | undefined
  const plugin = (request: ExecRequest): ExecOutput => {
    const cniVersion = versionOf(request.stdin)
    const key = `${request.env.CNI_CONTAINERID ?? ""}/${request.env.CNI_IFNAME ?? ""}`
    switch (request.env.CNI_COMMAND) {
      case "ADD": {
        if (addFailure !== undefined) return err(addFailure.code, addFailure.msg, cniVersion)
        let address = allocations.get(key)
        if (address === undefined) {
          const used = new Set(allocations.values())
          let host = 2
          while (used.has(`${prefix}.${host}/24`)) host++
          address = `${prefix}.${host}/24`
          allocations.set(key, address)
        }
        const legacy = cniVersion.startsWith("0.")
        return ok(JSON.stringify({
          cniVersion,
          ips: [{ ...(legacy ? { version: "4" } : {}), address, gateway: `${prefix}.1` }],
          routes: [{ dst: "0.0.0.0/0" }],
          dns: {}
        }))
      }
      case "DEL":
        allocations.delete(key)
        return ok("")
      case "CHECK":
        return allocations.has(key) ? ok("") : err(999, `fake-ipam: no address for ${key}`, cniVersion)
      case "GC": {
        const config = JSON.parse(request.stdin) as { "cni.dev/valid-attachments"?: Array<{ containerID: string; ifname: string }> }
        const valid = new Set((config["cni.dev/valid-attachments"] ?? []).map((a) => `${a.containerID}/${a.ifname}`))
        for (const held of [...allocations.keys()]) if (!valid.has(held)) allocations.delete(held)
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
    allocations: () => new Map(allocations),
    forget: (containerId, ifname) => {
      allocations.delete(`${containerId}/${ifname}`)
    },
    failAdd: (error) => {
      addFailure = error
    }
  }
}
