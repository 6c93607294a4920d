/**
 * Network configuration schemas: one plugin's config as received on stdin
 * (NetConf) and a whole conflist (NetConfList). Unknown keys are preserved,
 * since plugin-specific keys ride alongside the well-known ones.
 */
import { Effect, Schema } from "effect"
import { decodeFailure, invalidConfig, type CniError } from "./errors.ts"
import { describeSchemaError } from "./schema-error.ts"

const Rest = [Schema.Record(Schema.String, Schema.Unknown)] as const

/** An arbitrary JSON object (args, runtimeConfig, prevResult before version-aware decoding). */
const UnknownObject = Schema.Record(Schema.String, Schema.Unknown)

/** A network name: alphanumeric first character, then `[A-Za-z0-9_.-]`. */
export const NetworkName = Schema.String.pipe(
  Schema.check(
    Schema.makeFilter((s: string) =>
      /^[A-Za-z0-9][A-Za-z0-9_.-]*$/.test(s) ||
      "invalid network name (must start with an alphanumeric character, then only [A-Za-z0-9_.-])"
    )
  )
)

/** The `ipam` section: a delegate `type` plus whatever that IPAM plugin understands. */
/** `type` may be absent: `"ipam": {}` is how the reference plugins spell "no IPAM" (an L2-only bridge). */
const IpamConf = Schema.StructWithRest(Schema.Struct({ type: Schema.optionalKey(Schema.String) }), Rest)

/** The `dns` section of a config (same keys as a result's dns; extras kept). */
const DnsConf = Schema.StructWithRest(
  Schema.Struct({
    nameservers: Schema.optionalKey(Schema.Array(Schema.String)),
    domain: Schema.optionalKey(Schema.String),
    search: Schema.optionalKey(Schema.Array(Schema.String)),
    options: Schema.optionalKey(Schema.Array(Schema.String))
  }),
  Rest
)

/** One attachment a runtime still considers valid (GC's `cni.dev/valid-attachments`). */
const Attachment = Schema.Struct({ containerID: Schema.String, ifname: Schema.String })

/** One plugin's configuration as it arrives on stdin; unknown keys survive decode and encode. */
export const NetConf = Schema.StructWithRest(
  Schema.Struct({
    cniVersion: Schema.String,
    name: NetworkName,
    type: Schema.String,
    capabilities: Schema.optionalKey(Schema.Record(Schema.String, Schema.Boolean)),
    ipam: Schema.optionalKey(IpamConf),
    dns: Schema.optionalKey(DnsConf),
    args: Schema.optionalKey(UnknownObject),
    runtimeConfig: Schema.optionalKey(UnknownObject),
    prevResult: Schema.optionalKey(UnknownObject),
    "cni.dev/valid-attachments": Schema.optionalKey(Schema.Array(Attachment)),
    "cni.dev/attachments": Schema.optionalKey(Schema.Array(Attachment))
  }),
  Rest
)
/** Decoded plugin config (unknown keys included). */
export type NetConf = typeof NetConf.Type

/** One entry of a conflist's `plugins`: a `type` plus plugin-specific keys. */
const PluginConf = Schema.StructWithRest(Schema.Struct({ type: Schema.String }), Rest)

/** A network configuration list (conflist); unknown keys are preserved. */
export const NetConfList = Schema.StructWithRest(
  Schema.Struct({
    cniVersion: Schema.String,
    cniVersions: Schema.optionalKey(Schema.Array(Schema.String)),
    name: NetworkName,
    disableCheck: Schema.optionalKey(Schema.Boolean),
    disableGC: Schema.optionalKey(Schema.Boolean),
    plugins: Schema.NonEmptyArray(PluginConf)
  }),
  Rest
)
/** Decoded conflist. */
export type NetConfList = typeof NetConfList.Type

const toInvalidConfig = (error: unknown): CniError => {
  const { path, message } = describeSchemaError(error)
  return invalidConfig(path === "" ? "network config" : path, message)
}

/** Validates a parsed plugin config; failures are code 7 naming the field. */
export const decodeNetConf = (json: unknown): Effect.Effect<NetConf, CniError> =>
  Schema.decodeUnknownEffect(NetConf)(json).pipe(Effect.mapError(toInvalidConfig))

/** Parses stdin as JSON; bad JSON (an empty stdin too) is code 6. */
export const parseConfigJson = (stdin: string): Effect.Effect<unknown, CniError> =>
  Effect.try({
    try: (): unknown => JSON.parse(stdin),
    catch: (e) =>
      decodeFailure("failed to parse network config JSON from stdin", e instanceof Error ? e.message : String(e))
  })

/** Parses stdin into a plugin config: bad JSON is code 6, a bad config code 7. */
export const parseNetConf = (stdin: string): Effect.Effect<NetConf, CniError> =>
  parseConfigJson(stdin).pipe(Effect.flatMap(decodeNetConf))

/** Validates a parsed conflist; failures are code 7 naming the field. */
export const decodeNetConfList = (json: unknown): Effect.Effect<NetConfList, CniError> =>
  Schema.decodeUnknownEffect(NetConfList)(json).pipe(Effect.mapError(toInvalidConfig))

/** The GC valid-attachment set, preferring `cni.dev/valid-attachments` over libcni's older `cni.dev/attachments`. */
export const validAttachments = (
  conf: NetConf
): ReadonlyArray<{ containerID: string; ifname: string }> | undefined =>
  conf["cni.dev/valid-attachments"] ?? conf["cni.dev/attachments"]

/** A plugin config number that must be an integer from `min` to `max` (the message says so). */
export const IntegerInRange = (min: number, max: number) =>
  Schema.Number.pipe(
    Schema.check(Schema.makeFilter((n: number) => (Number.isInteger(n) && n >= min && n <= max) || `an integer from ${min} to ${max}`))
  )

/**
 * Validates a plugin's own keys (read from the raw stdin object) with the plugin's schema;
 * failures are code 7 naming the field, exactly as for the common keys.
 */
export const decodePluginKeys =
  <S extends Schema.Decoder<unknown>>(schema: S) => (json: unknown): Effect.Effect<S["Type"], CniError> =>
    Schema.decodeUnknownEffect(schema)(json).pipe(Effect.mapError(toInvalidConfig))
