/**
 * Object keys as Go's encoding/json matches them to a struct's fields: the exact name, or
 * else one equal to it but for case. Runtimes written in Go send some capability args from
 * structs without JSON tags — containerd's go-cni sends `portMappings` as
 * `{"HostPort":8080,"ContainerPort":80,"Protocol":"tcp","HostIP":""}`, `bandwidth` as
 * `{"IngressRate":…}`, `ipRanges` as `{"Subnet":…}` — and the reference plugins, decoding
 * with encoding/json, accept them. tscni reads those keys the same way.
 */
export const withGoFieldNames = (value: unknown, fields: ReadonlyArray<string>): unknown => {
  if (typeof value !== "object" || value === null || Array.isArray(value)) return value
  const object = value as Record<string, unknown>
  const renamed: Record<string, unknown> = {}
  for (const [key, entry] of Object.entries(object)) {
    if (fields.includes(key)) {
      renamed[key] = entry
      continue
    }
    const field = fields.find((name) => name.toLowerCase() === key.toLowerCase())
    // an exact key wins over one that only matches without case, as in Go
    if (field !== undefined && !(field in object)) renamed[field] = entry
    else renamed[key] = entry
  }
  return renamed
}

/** `withGoFieldNames` of every element of an array (a non-array is returned as it is). */
export const eachWithGoFieldNames = (value: unknown, fields: ReadonlyArray<string>): unknown =>
  Array.isArray(value) ? value.map((element) => withGoFieldNames(element, fields)) : value

/**
 * A config with one of its runtimeConfig capabilities passed through `normalize` (the
 * config itself is not changed; anything not an object is returned as it is).
 */
export const withRuntimeCapability = (raw: unknown, capability: string, normalize: (value: unknown) => unknown): unknown => {
  if (typeof raw !== "object" || raw === null || Array.isArray(raw)) return raw
  const config = raw as Record<string, unknown>
  const runtimeConfig = config.runtimeConfig
  if (typeof runtimeConfig !== "object" || runtimeConfig === null || Array.isArray(runtimeConfig)) return raw
  if (!(capability in runtimeConfig)) return raw
  const capabilities = runtimeConfig as Record<string, unknown>
  return { ...config, runtimeConfig: { ...capabilities, [capability]: normalize(capabilities[capability]) } }
}
