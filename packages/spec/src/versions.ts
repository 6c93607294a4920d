/**
 * CNI specification versions and verbs: which versions tscni speaks, how to
 * compare them, and which verbs each version defines.
 */

/** Every spec version tscni plugins accept and emit, oldest first. */
export const SUPPORTED_VERSIONS: ReadonlyArray<string> = ["0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0"]

/** The newest spec version: what tscni writes when nothing else was asked for. */
export const LATEST_VERSION = "1.1.0" as const

/** The CNI_COMMAND values a plugin may be run with. */
export type Verb = "ADD" | "CHECK" | "DEL" | "GC" | "STATUS" | "VERSION"

const parts = (v: string): ReadonlyArray<number> =>
  v.split(".").map((p) => {
    const n = Number.parseInt(p, 10)
    return Number.isNaN(n) ? 0 : n
  })

/**
 * Orders two "x.y.z" version strings numerically (so "0.10.0" > "0.9.0");
 * negative when a < b, 0 when equal, positive when a > b. Missing parts count as 0.
 */
export const compareVersions = (a: string, b: string): number => {
  const pa = parts(a)
  const pb = parts(b)
  const len = Math.max(pa.length, pb.length, 3)
  for (let i = 0; i < len; i++) {
    const d = (pa[i] ?? 0) - (pb[i] ?? 0)
    if (d !== 0) return d < 0 ? -1 : 1
  }
  return 0
}

/** Whether tscni can speak the given spec version (exact match against SUPPORTED_VERSIONS). */
export const isSupportedVersion = (v: string): boolean => SUPPORTED_VERSIONS.includes(v)

const verbSince: Record<Verb, string> = {
  ADD: "0.1.0",
  CHECK: "0.4.0",
  DEL: "0.1.0",
  GC: "1.1.0",
  STATUS: "1.1.0",
  VERSION: "0.1.0"
}

/** Every CNI verb. */
export const VERBS = Object.keys(verbSince) as ReadonlyArray<Verb>

/** Whether a string is a CNI verb. */
export const isVerb = (value: string): value is Verb => Object.hasOwn(verbSince, value)

/** Whether a verb exists in the given spec version (CHECK since 0.4.0, GC/STATUS since 1.1.0). */
export const verbSupported = (verb: Verb, version: string): boolean =>
  compareVersions(version, verbSince[verb]) >= 0

/**
 * The highest version present in both lists (e.g. a conflist's `cniVersions`
 * against what the plugins support); undefined when they share none.
 */
export const negotiateVersion = (
  wanted: ReadonlyArray<string>,
  supported: ReadonlyArray<string> = SUPPORTED_VERSIONS
): string | undefined => {
  let best: string | undefined
  for (const v of wanted) {
    if (!supported.includes(v)) continue
    if (best === undefined || compareVersions(v, best) > 0) best = v
  }
  return best
}

/** The JSON a plugin prints for the VERSION verb. */
export const versionInfo = (
  supported: ReadonlyArray<string> = SUPPORTED_VERSIONS
): { cniVersion: string; supportedVersions: ReadonlyArray<string> } => ({
  cniVersion: LATEST_VERSION,
  supportedVersions: [...supported]
})
