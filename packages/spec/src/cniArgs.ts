/** A CNI_ARGS string split, or the first element that is not KEY=VALUE. */
export type SplitCniArgs =
  | { readonly pairs: ReadonlyArray<readonly [string, string]> }
  | { readonly invalid: string }

/**
 * CNI_ARGS (`K=V;K2=V2`) as ordered pairs, split at each element's first '='; empty
 * elements are skipped. An element without '=' or with an empty key is returned as
 * `invalid`, for the caller to name its source (the env variable, a CLI flag).
 */
export const splitCniArgs = (raw: string): SplitCniArgs => {
  const pairs: Array<readonly [string, string]> = []
  for (const element of raw.split(";")) {
    if (element === "") continue
    const eq = element.indexOf("=")
    if (eq <= 0) return { invalid: element }
    pairs.push([element.slice(0, eq), element.slice(eq + 1)])
  }
  return { pairs }
}
