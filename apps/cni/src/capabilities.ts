/**
 * What the runtime adds to each plugin's config: `name` and `cniVersion` of the list,
 * `prevResult`, and `runtimeConfig` holding only the capability args the plugin declares
 * (`capabilities: {x: true}`) and the user supplied. Capability args come from `--cap
 * name=JSON` and from pod annotations, turned into capabilities the way containerd does.
 */
import { Effect } from "effect"
import { type CniError, invalidConfig, splitCniArgs } from "@tscni/spec"

/** Capability name → value, as given to the runtime (libcni's CapabilityArgs). */
export type CapabilityArgs = Readonly<Record<string, unknown>>

const INGRESS = "kubernetes.io/ingress-bandwidth"
const EGRESS = "kubernetes.io/egress-bandwidth"
/** containerd hands every pod annotation to plugins that declare this capability. */
export const POD_ANNOTATIONS_CAPABILITY = "io.kubernetes.cri.pod-annotations"
/** containerd's burst for annotation bandwidth: math.MaxUint32 bits. */
export const ANNOTATION_BURST = 4294967295

const usage = (flag: string, problem: string): CniError => invalidConfig(flag, problem)

/** Splits `K=V` at the first `=`; the key must not be empty. */
export const splitKeyValue = (flag: string, text: string): Effect.Effect<readonly [string, string], CniError> => {
  const at = text.indexOf("=")
  if (at <= 0) return Effect.fail(usage(flag, `expected NAME=VALUE, got ${JSON.stringify(text)}`))
  return Effect.succeed([text.slice(0, at), text.slice(at + 1)] as const)
}

/** `--cap name=JSON`: the value is JSON, or else taken as a plain string (`--cap mac=0a:…`). */
export const parseCapability = (text: string): Effect.Effect<readonly [string, unknown], CniError> =>
  splitKeyValue("--cap", text).pipe(
    Effect.map(([name, raw]): readonly [string, unknown] => {
      try {
        return [name, JSON.parse(raw)]
      } catch {
        return [name, raw]
      }
    })
  )

/** `--args K=V;K=V` as libcni's `[][2]string`; empty parts are ignored. */
export const parseCniArgs = (text: string): Effect.Effect<ReadonlyArray<readonly [string, string]>, CniError> => {
  const split = splitCniArgs(text)
  return "invalid" in split
    ? Effect.fail(usage("--args", `expected NAME=VALUE, got ${JSON.stringify(split.invalid)}`))
    : Effect.succeed(split.pairs)
}

/** CNI_ARGS from pairs. */
export const formatCniArgs = (pairs: ReadonlyArray<readonly [string, string]>): string =>
  pairs.map(([k, v]) => `${k}=${v}`).join(";")

const SUFFIXES: Record<string, number> = {
  "": 1,
  n: 1e-9,
  u: 1e-6,
  m: 1e-3,
  k: 1e3,
  M: 1e6,
  G: 1e9,
  T: 1e12,
  P: 1e15,
  E: 1e18,
  Ki: 2 ** 10,
  Mi: 2 ** 20,
  Gi: 2 ** 30,
  Ti: 2 ** 40,
  Pi: 2 ** 50,
  Ei: 2 ** 60
}

/**
 * A Kubernetes quantity (`1M`, `10Mi`, `500k`, `1.5G`, `1e6`) as a whole number, rounded
 * up as `Quantity.Value()` does; undefined when it is not one.
 */
export const parseQuantity = (text: string): number | undefined => {
  const match = /^([+]?(?:\d+(?:\.\d*)?|\.\d+))(?:([eE][+-]?\d+)|(Ki|Mi|Gi|Ti|Pi|Ei|[numkMGTPE])?)$/.exec(text.trim())
  if (match === null) return undefined
  const [, digits = "", exponent, suffix = ""] = match
  const base = Number(digits)
  const scale = exponent !== undefined ? 10 ** Number(exponent.slice(1)) : SUFFIXES[suffix]
  if (scale === undefined || !Number.isFinite(base)) return undefined
  // avoid 1.1 * 1e6 = 1100000.0000000002 rounding up to 1100001
  return Math.ceil(Number((base * scale).toPrecision(15)))
}

const MIN_BANDWIDTH = 1000 // 1 kbit, Kubernetes' lower bound
const MAX_BANDWIDTH = 1e15 // 1 Pbit, Kubernetes' upper bound

const bandwidthRate = (annotation: string, value: string): Effect.Effect<number, CniError> => {
  const rate = parseQuantity(value)
  if (rate === undefined) return Effect.fail(usage(annotation, `not a quantity: ${JSON.stringify(value)}`))
  if (rate < MIN_BANDWIDTH) return Effect.fail(usage(annotation, `${value} is unreasonably small (< 1kbit)`))
  if (rate > MAX_BANDWIDTH) return Effect.fail(usage(annotation, `${value} is unreasonably large (> 1Pbit)`))
  return Effect.succeed(rate)
}

/**
 * The `bandwidth` capability from the pod annotations, as containerd builds it: rates in
 * bits/s, bursts MaxUint32 bits. Undefined when neither annotation is set.
 */
export const bandwidthFromAnnotations = (
  annotations: Readonly<Record<string, string>>
): Effect.Effect<Record<string, number> | undefined, CniError> =>
  Effect.gen(function*() {
    const ingress = annotations[INGRESS]
    const egress = annotations[EGRESS]
    if (ingress === undefined && egress === undefined) return undefined
    const out: Record<string, number> = {}
    if (ingress !== undefined) {
      out.ingressRate = yield* bandwidthRate(INGRESS, ingress)
      out.ingressBurst = ANNOTATION_BURST
    }
    if (egress !== undefined) {
      out.egressRate = yield* bandwidthRate(EGRESS, egress)
      out.egressBurst = ANNOTATION_BURST
    }
    return out
  })

/**
 * The capability args of one request: every `--cap`, plus from annotations `bandwidth`
 * and the pod-annotations capability. `bandwidth` given both ways is refused.
 */
export const capabilityArgs = (
  caps: ReadonlyArray<string>,
  annotationFlags: ReadonlyArray<string>
): Effect.Effect<CapabilityArgs, CniError> =>
  Effect.gen(function*() {
    const args: Record<string, unknown> = {}
    for (const text of caps) {
      const [name, value] = yield* parseCapability(text)
      args[name] = value
    }
    if (annotationFlags.length === 0) return args
    const annotations: Record<string, string> = {}
    for (const text of annotationFlags) {
      const [key, value] = yield* splitKeyValue("--annotation", text)
      annotations[key] = value
    }
    const bandwidth = yield* bandwidthFromAnnotations(annotations)
    if (bandwidth !== undefined) {
      if ("bandwidth" in args) {
        return yield* usage("--cap bandwidth", "bandwidth is given both as --cap and as annotations; give one")
      }
      args.bandwidth = bandwidth
    }
    if (!(POD_ANNOTATIONS_CAPABILITY in args)) args[POD_ANNOTATIONS_CAPABILITY] = annotations
    return args
  })

const declaredCapabilities = (plugin: Readonly<Record<string, unknown>>): ReadonlyArray<string> => {
  const caps = plugin.capabilities
  if (typeof caps !== "object" || caps === null) return []
  return Object.entries(caps).filter(([, on]) => on === true).map(([name]) => name)
}

/** The `runtimeConfig` a plugin gets: its true capabilities that were supplied; undefined if none. */
export const runtimeConfigFor = (
  plugin: Readonly<Record<string, unknown>>,
  args: CapabilityArgs
): Record<string, unknown> | undefined => {
  const rc: Record<string, unknown> = {}
  for (const name of declaredCapabilities(plugin)) {
    if (Object.hasOwn(args, name)) rc[name] = args[name]
  }
  return Object.keys(rc).length > 0 ? rc : undefined
}

/** What the runtime injects into one plugin's config. */
export interface Injection {
  readonly name: string
  readonly cniVersion: string
  /** prevResult JSON in `cniVersion`'s wire form */
  readonly prevResult?: unknown
  /** capability args; absent for GC and STATUS, which get none */
  readonly capabilityArgs?: CapabilityArgs
  /** any other keys (GC's valid attachments) */
  readonly extra?: Readonly<Record<string, unknown>>
}

/**
 * One plugin's stdin as libcni's buildOneConfig makes it: the plugin's own keys, then
 * name, cniVersion, prevResult and (only when non-empty) runtimeConfig, replacing any
 * written in the file.
 */
export const buildPluginConfig = (
  plugin: Readonly<Record<string, unknown>>,
  injection: Injection
): Record<string, unknown> => {
  const config: Record<string, unknown> = { ...plugin, name: injection.name, cniVersion: injection.cniVersion }
  if (injection.prevResult !== undefined) config.prevResult = injection.prevResult
  if (injection.capabilityArgs !== undefined) {
    const rc = runtimeConfigFor(plugin, injection.capabilityArgs)
    if (rc !== undefined) config.runtimeConfig = rc
  }
  return { ...config, ...injection.extra }
}
