import { Effect, Schema } from "effect"
import { sysctlKey } from "@tscni/backend"
import { type LinkOptions, readFileIfExists } from "@tscni/steps"
import { type CniError, decodePluginKeys, IntegerInRange, invalidConfig, ioFailure } from "@tscni/spec"
import { InterfaceMac, macFromCniArgs, type PluginRequest } from "@tscni/skel"

const Mac = InterfaceMac

/** 0 means "leave the MTU alone", as in the reference plugin. */
const Mtu = Schema.Number.pipe(
  Schema.check(
    Schema.makeFilter((n: number) => (Number.isInteger(n) && (n === 0 || (n >= 68 && n <= 65535))) || "an integer from 68 to 65535 (0: unchanged)")
  )
)

const TxQLen = IntegerInRange(0, 4294967295)

/** `sysctl`: key → value, both strings, as the reference plugin reads them. */
const Sysctls = Schema.Record(Schema.String, Schema.String)

/** What `args.cni` may override (the reference's IPAMArgs). */
const CniArgs = Schema.Struct({
  sysctl: Schema.optionalKey(Sysctls),
  mac: Schema.optionalKey(Mac),
  promisc: Schema.optionalKey(Schema.Boolean),
  mtu: Schema.optionalKey(Mtu),
  allmulti: Schema.optionalKey(Schema.Boolean),
  txQLen: Schema.optionalKey(TxQLen)
})

/** The tuning plugin's own keys, as the reference tuning plugin reads them. */
const TuningKeys = Schema.Struct({
  dataDir: Schema.optionalKey(
    Schema.String.pipe(Schema.check(Schema.makeFilter((dir: string) => dir === "" || dir.startsWith("/") || "an absolute path")))
  ),
  sysctl: Schema.optionalKey(Sysctls),
  mac: Schema.optionalKey(Schema.Union([Mac, Schema.Literal("")])),
  promisc: Schema.optionalKey(Schema.Boolean),
  mtu: Schema.optionalKey(Mtu),
  allmulti: Schema.optionalKey(Schema.Boolean),
  txQLen: Schema.optionalKey(TxQLen),
  args: Schema.optionalKey(Schema.Struct({ cni: Schema.optionalKey(CniArgs) })),
  runtimeConfig: Schema.optionalKey(Schema.Struct({ mac: Schema.optionalKey(Schema.Union([Mac, Schema.Literal("")])) }))
})

/** Where a deployment keeps things; the binary uses the defaults, tests their own. */
export interface TuningOptions {
  /** base of the per-attachment state files, unless the config names `dataDir` */
  readonly dataDir: string
  /** regex-per-line list of the sysctl keys a config may set; no file: every `net.*` key */
  readonly allowlistPath: string
}

/**
 * Where the installed binary keeps state and reads its allowlist (the reference plugin's
 * allowlist path); tests pass their own options.
 */
export const DEFAULT_OPTIONS: TuningOptions = {
  dataDir: "/var/lib/tscni/tuning",
  allowlistPath: "/etc/cni/tuning/allowlist.conf"
}

/** One sysctl to write: the key as configured and as resolved for this interface. */
export interface SysctlSetting {
  readonly configKey: string
  /** dotted (`net.ipv4.conf.eth0.arp_notify`), or a `/` path when a segment holds a dot */
  readonly key: string
  readonly value: string
}

/** Everything the tuning plugin decided from its config, before any side effect. */
export interface TuningSettings {
  readonly network: string
  readonly dataDir: string
  /** sysctls as configured (config keys, IFNAME not yet resolved), args.cni.sysctl merged in */
  readonly sysctl: ReadonlyArray<readonly [string, string]>
  /**
   * interface changes, one property each, in the reference's order (mac, promisc, mtu,
   * allmulti, txqlen). `promisc: false` is "leave it", as in the reference.
   */
  readonly link: ReadonlyArray<LinkOptions>
  readonly mac: string | undefined
}


const nonEmpty = (mac: string | undefined): string | undefined => (mac === "" ? undefined : mac)

/**
 * Decodes the config with the reference's precedence: `args.cni.*` over the plugin keys;
 * for the MAC, `args.cni.mac` over `runtimeConfig.mac` over CNI_ARGS `MAC` over `mac`.
 * Sysctl keys are not resolved here (GC and DEL have no interface).
 */
export const tuningSettings = (request: PluginRequest, options: TuningOptions): Effect.Effect<TuningSettings, CniError> =>
  Effect.gen(function*() {
    const keys = yield* decodePluginKeys(TuningKeys)(request.raw)
    const overrides = keys.args?.cni ?? {}
    const mac = nonEmpty(overrides.mac) ?? nonEmpty(keys.runtimeConfig?.mac) ?? (yield* macFromCniArgs(request.env.args)) ??
      nonEmpty(keys.mac)
    const promisc = overrides.promisc ?? keys.promisc ?? false
    const mtu = overrides.mtu ?? keys.mtu ?? 0
    const allmulti = overrides.allmulti ?? keys.allmulti
    const txqlen = overrides.txQLen ?? keys.txQLen
    const link: Array<LinkOptions> = []
    if (mac !== undefined) link.push({ mac: mac.toLowerCase() })
    if (promisc) link.push({ promisc: true })
    if (mtu !== 0) link.push({ mtu })
    if (allmulti !== undefined) link.push({ allmulti })
    if (txqlen !== undefined) link.push({ txqlen })
    const sysctl = new Map(Object.entries(keys.sysctl ?? {}))
    for (const [key, value] of Object.entries(overrides.sysctl ?? {})) sysctl.set(key, value)
    return {
      network: request.conf.name,
      dataDir: keys.dataDir === undefined || keys.dataDir === "" ? options.dataDir : keys.dataDir,
      sysctl: [...sysctl.entries()],
      link,
      mac: mac?.toLowerCase()
    }
  })

/**
 * A configured key for this interface: `.` or `/` separated, `IFNAME` (first occurrence,
 * as the reference) replaced by the interface name, only under `net`. The result is dotted
 * unless a segment contains a dot (an interface like `eth0.100`): then it is a path.
 */
export const resolveSysctlKey = (configKey: string, ifname: string): string | undefined => {
  const separator = configKey.includes("/") ? "/" : "."
  const segments = configKey.replace(/^\/+/, "").split(separator)
  const at = segments.indexOf("IFNAME")
  if (at >= 0) segments[at] = ifname
  if (segments[0] !== "net" || segments.length < 2) return undefined
  if (segments.some((segment) => segment === "" || segment === "." || segment === ".." || segment.includes("/"))) return undefined
  return sysctlKey(...segments)
}

/** The allowlist's patterns, or undefined when there is no file (no restriction then). */
const readAllowlist = (path: string): Effect.Effect<ReadonlyArray<string> | undefined, CniError> =>
  Effect.try({
    try: () => readFileIfExists(path),
    catch: (error) => ioFailure(`cannot read the sysctl allowlist ${path}`, error instanceof Error ? error.message : String(error))
  }).pipe(
    Effect.map((text) => text?.split("\n").map((line) => line.trim()).filter((line) => line !== ""))
  )

const compile = (pattern: string, path: string): Effect.Effect<RegExp, CniError> =>
  Effect.try({
    try: () => new RegExp(pattern),
    catch: () => invalidConfig(path, `'${pattern}' is not a regular expression`)
  })

/**
 * Resolves every configured sysctl for the interface and checks it: a `net.*` key, not
 * set twice, and (when the allowlist file exists) matching one of its patterns, as the
 * reference matches them: against the key as configured, unanchored.
 */
export const resolveSysctls = (
  settings: TuningSettings,
  ifname: string,
  options: TuningOptions
): Effect.Effect<ReadonlyArray<SysctlSetting>, CniError> =>
  Effect.gen(function*() {
    const allowlist = settings.sysctl.length === 0 ? undefined : yield* readAllowlist(options.allowlistPath)
    const patterns: Array<RegExp> = []
    for (const pattern of allowlist ?? []) patterns.push(yield* compile(pattern, options.allowlistPath))
    const resolved: Array<SysctlSetting> = []
    const seen = new Set<string>()
    for (const [configKey, value] of settings.sysctl) {
      const key = resolveSysctlKey(configKey, ifname)
      if (key === undefined) return yield* invalidConfig(`sysctl["${configKey}"]`, "not a network sysctl (net.*)")
      if (allowlist !== undefined && !patterns.some((pattern) => pattern.test(configKey))) {
        return yield* invalidConfig(`sysctl["${configKey}"]`, `not allowed by ${options.allowlistPath}`)
      }
      const canonical = key.replaceAll("/", ".")
      if (seen.has(canonical)) return yield* invalidConfig(`sysctl["${configKey}"]`, `sets ${key} a second time`)
      seen.add(canonical)
      resolved.push({ configKey, key, value })
    }
    return resolved
  })
