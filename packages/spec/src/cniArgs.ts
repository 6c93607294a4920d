/** A CNI_ARGS string split, or the first element that is not KEY=VALUE. */
export type SplitCniArgs =
  | { readonly pairs: ReadonlyArray<readonly [string, string]> }
  | { readonly invalid: string }

/**
 * CNI_ARGS (`K=V;K2=V2`) as ordered pairs; empty elements are skipped. As libcni's
 * `LoadArgs` reads it, an element is exactly one KEY=VALUE: one without '=', with an empty
 * key or with a second '=' is returned as `invalid`, for the caller to name its source (the
 * env variable, a CLI flag).
 */
export const splitCniArgs = (raw: string): SplitCniArgs => {
  const pairs: Array<readonly [string, string]> = []
  for (const element of raw.split(";")) {
    if (element === "") continue
    const parts = element.split("=")
    if (parts.length !== 2 || parts[0] === "") return { invalid: element }
    pairs.push([parts[0]!, parts[1]!])
  }
  return { pairs }
}

/** A CNI_ARGS boolean as libcni reads one (`IgnoreUnknown`): 1/true or 0/false, any case. */
export const parseCniBool = (value: string): boolean | undefined => {
  switch (value.toLowerCase()) {
    case "1":
    case "true":
      return true
    case "0":
    case "false":
      return false
    default:
      return undefined
  }
}
