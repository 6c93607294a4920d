import { readFileSync } from "node:fs"
import { Effect } from "effect"
import { type CniError, type Dns, invalidConfig } from "@tscni/spec"

type DnsValue = typeof Dns.Type

/**
 * A resolv.conf as the reference's host-local reads it into the result's `dns`:
 * `nameserver`, `domain`, `search`, `options`; comments (`#`, `;`) and other lines skipped.
 */
const parseResolvConf = (text: string): DnsValue => {
  const nameservers: Array<string> = []
  const search: Array<string> = []
  const options: Array<string> = []
  let domain: string | undefined
  for (const raw of text.split("\n")) {
    const line = raw.trim()
    if (line === "" || line.startsWith("#") || line.startsWith(";")) continue
    const [keyword, ...fields] = line.split(/\s+/)
    if (fields.length === 0) continue
    if (keyword === "nameserver") nameservers.push(fields[0]!)
    else if (keyword === "domain") domain = fields[0]!
    else if (keyword === "search") search.push(...fields)
    else if (keyword === "options") options.push(...fields)
  }
  return {
    ...(nameservers.length > 0 ? { nameservers } : {}),
    ...(domain !== undefined ? { domain } : {}),
    ...(search.length > 0 ? { search } : {}),
    ...(options.length > 0 ? { options } : {})
  }
}

/** Reads `ipam.resolvConf`; a file that cannot be read is a config error naming the field. */
export const readResolvConf = (path: string): Effect.Effect<DnsValue, CniError> =>
  Effect.try({
    try: () => readFileSync(path, "utf8"),
    catch: (error) => invalidConfig("ipam.resolvConf", `cannot read ${path}: ${error instanceof Error ? error.message : String(error)}`)
  }).pipe(Effect.map(parseResolvConf))
