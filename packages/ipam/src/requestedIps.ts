/**
 * Where a runtime asks an IPAM plugin for specific addresses, read the way the reference
 * plugins read them: the `ips` capability (`runtimeConfig.ips`), the `args.cni.ips`
 * convention, and `IP=` in CNI_ARGS (parsed like libcni's `types.LoadArgs`).
 */
import { Effect } from "effect"
import { type CniError, invalidConfig, invalidEnvironment, type NetConf } from "@tscni/spec"

/** One address text a runtime asked for, with the field it came from and how to blame it. */
export interface RequestedText {
  readonly text: string
  /** e.g. `runtimeConfig.ips[0]`, `args.cni.ips[1]`, `CNI_ARGS IP` */
  readonly field: string
  /** The error for a problem with this entry: code 7 for config fields, code 4 for CNI_ARGS. */
  readonly fail: (problem: string) => CniError
}

const isRecord = (value: unknown): value is Record<string, unknown> =>
  typeof value === "object" && value !== null && !Array.isArray(value)

const stringList = (value: unknown, field: string): Effect.Effect<ReadonlyArray<RequestedText>, CniError> => {
  // Go's json decoding treats a missing key and `null` alike.
  if (value === undefined || value === null) return Effect.succeed([])
  if (!Array.isArray(value)) return Effect.fail(invalidConfig(field, "expected an array of strings"))
  const out: Array<RequestedText> = []
  for (const [index, item] of value.entries()) {
    const itemField = `${field}[${index}]`
    if (typeof item !== "string") return Effect.fail(invalidConfig(itemField, "expected a string"))
    out.push({ text: item.trim(), field: itemField, fail: (problem) => invalidConfig(itemField, problem) })
  }
  return Effect.succeed(out)
}

/** `runtimeConfig.ips`: the `ips` capability a runtime injects. */
export const runtimeConfigIps = (conf: NetConf): Effect.Effect<ReadonlyArray<RequestedText>, CniError> =>
  stringList(conf.runtimeConfig?.ips, "runtimeConfig.ips")

/** `args.cni.ips`: the CONVENTIONS.md way to pass addresses in the config itself. */
export const argsCniIps = (conf: NetConf): Effect.Effect<ReadonlyArray<RequestedText>, CniError> => {
  const cni = conf.args?.cni
  if (cni === undefined || cni === null) return Effect.succeed([])
  if (!isRecord(cni)) return Effect.fail(invalidConfig("args.cni", "expected an object"))
  return stringList(cni.ips, "args.cni.ips")
}

/** A comma-separated CNI_ARGS value split into entries (empty entries skipped). */
export const cniArgsList = (value: string | undefined, key: string): ReadonlyArray<RequestedText> =>
  (value ?? "").split(",").map((item) => item.trim()).filter((item) => item !== "").map((text) => ({
    text,
    field: `CNI_ARGS ${key}`,
    fail: (problem: string) => invalidEnvironment("CNI_ARGS", `${key}: ${problem}`)
  }))

/** The value of a CNI_ARGS key (the last one, as libcni's LoadArgs keeps); the skel checked the rest. */
export const cniArgValue = (args: ReadonlyArray<readonly [string, string]>, key: string): string | undefined =>
  args.findLast(([name]) => name === key)?.[1]
