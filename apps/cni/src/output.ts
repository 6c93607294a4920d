/**
 * What `cni` prints: a result as tables (interfaces, IPs, routes) or as JSON, and errors
 * as the plugin's CNI error (code, msg, details) naming the plugin and verb.
 */
import type { CniError } from "@tscni/spec"
import type { CommandError } from "./errors.ts"

/** Left-aligned columns, two spaces apart; trailing blanks trimmed. */
export const table = (header: ReadonlyArray<string>, rows: ReadonlyArray<ReadonlyArray<string>>): string => {
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? "").length)))
  const line = (cells: ReadonlyArray<string>) => cells.map((c, i) => c.padEnd(widths[i] ?? 0)).join("  ").trimEnd()
  return [line(header), ...rows.map(line)].join("\n")
}

const isObject = (value: unknown): value is Record<string, unknown> =>
  typeof value === "object" && value !== null && !Array.isArray(value)

const str = (value: unknown): string => (value === undefined || value === null ? "" : String(value))

const records = (value: unknown): ReadonlyArray<Record<string, unknown>> =>
  Array.isArray(value) ? value.filter(isObject) : []

/** A result JSON (any version) as human tables. */
export const formatResult = (result: unknown): string => {
  if (!isObject(result)) return "(no result)"
  const interfaces = records(result.interfaces)
  const sections: Array<string> = []
  if (interfaces.length > 0) {
    sections.push(table(["INTERFACE", "MAC", "SANDBOX"], interfaces.map((i) => [str(i.name), str(i.mac), str(i.sandbox)])))
  }
  const ips = records(result.ips)
  if (ips.length > 0) {
    sections.push(
      table(
        ["ADDRESS", "GATEWAY", "INTERFACE"],
        ips.map((ip) => {
          const index = typeof ip.interface === "number" ? ip.interface : undefined
          const name = index === undefined ? "" : str(interfaces[index]?.name)
          return [str(ip.address), str(ip.gateway), index === undefined ? "" : name === "" ? `#${index}` : name]
        })
      )
    )
  }
  const routes = records(result.routes)
  if (routes.length > 0) sections.push(table(["ROUTE", "VIA"], routes.map((r) => [str(r.dst), str(r.gw)])))
  const dns = isObject(result.dns) ? result.dns : undefined
  if (dns !== undefined && Array.isArray(dns.nameservers) && dns.nameservers.length > 0) {
    sections.push(`DNS  ${dns.nameservers.join(", ")}${typeof dns.domain === "string" ? ` (domain ${dns.domain})` : ""}`)
  }
  return sections.length > 0 ? sections.join("\n\n") : "(empty result)"
}

/** JSON as printed by `--json`: indented, one trailing newline added by the caller. */
export const formatJson = (value: unknown): string => JSON.stringify(value, null, 2)

const cniLines = (prefix: string, error: { readonly code: number; readonly msg: string; readonly details?: string | undefined }) => [
  `${prefix}: [code ${error.code}] ${error.msg}`,
  ...(error.details === undefined || error.details === "" ? [] : error.details.split("\n").map((l) => `  ${l}`))
]

/** An error for stderr, human form. */
export const formatError = (error: CommandError): string => {
  switch (error._tag) {
    case "PluginFailed":
      return cniLines(`cni: plugin ${error.plugin} failed (${error.verb})`, error).join("\n")
    case "Failures":
      return [`cni: ${error.summary}`, ...error.failures.flatMap((f) => cniLines(`  ${f.what}`, f))].join("\n")
    case "CniError":
      return cniLines("cni", error).join("\n")
  }
}

const cniJson = (error: Pick<CniError, "code" | "msg" | "details">) => ({
  code: error.code,
  msg: error.msg,
  ...(error.details === undefined ? {} : { details: error.details })
})

/** An error for stderr with `--json`: the CNI error JSON, plus which plugin and verb. */
export const errorJson = (error: CommandError): unknown => {
  switch (error._tag) {
    case "PluginFailed":
      return { plugin: error.plugin, verb: error.verb, ...cniJson(error) }
    case "Failures":
      return { msg: error.summary, failures: error.failures }
    case "CniError":
      return cniJson(error)
  }
}
