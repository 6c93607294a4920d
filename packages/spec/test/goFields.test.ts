import { describe, expect, test } from "bun:test"
import { eachWithGoFieldNames, withGoFieldNames, withRuntimeCapability } from "../src/index.ts"

describe("Go's field matching (encoding/json)", () => {
  const fields = ["hostPort", "containerPort", "protocol", "hostIP"]

  test("a key equal but for case becomes the field's name; others stay as they are", () => {
    expect(withGoFieldNames({ HostPort: 1, CONTAINERPORT: 2, protocol: "tcp", Other: true }, fields))
      .toEqual({ hostPort: 1, containerPort: 2, protocol: "tcp", Other: true })
  })

  test("an exact key wins over one that matches only without case", () => {
    expect(withGoFieldNames({ HostPort: 1, hostPort: 2 }, fields)).toEqual({ HostPort: 1, hostPort: 2 })
  })

  test("anything but an object (or array of them) is returned unchanged", () => {
    for (const value of [null, 5, "x", [1, 2]]) expect(withGoFieldNames(value, fields)).toEqual(value)
    expect(eachWithGoFieldNames({ HostPort: 1 }, fields)).toEqual({ HostPort: 1 })
    expect(eachWithGoFieldNames([{ HostPort: 1 }, 3], fields)).toEqual([{ hostPort: 1 }, 3])
  })

  test("withRuntimeCapability rewrites one capability of runtimeConfig, nothing else, and only when present", () => {
    const raw = { name: "n", runtimeConfig: { portMappings: [{ HostPort: 1 }], other: [{ HostPort: 2 }] } }
    expect(withRuntimeCapability(raw, "portMappings", (v) => eachWithGoFieldNames(v, fields)))
      .toEqual({ name: "n", runtimeConfig: { portMappings: [{ hostPort: 1 }], other: [{ HostPort: 2 }] } })
    expect(raw.runtimeConfig.portMappings).toEqual([{ HostPort: 1 }])
    expect(withRuntimeCapability({ name: "n" }, "portMappings", () => "changed")).toEqual({ name: "n" })
    expect(withRuntimeCapability({ runtimeConfig: {} }, "portMappings", () => "changed")).toEqual({ runtimeConfig: {} })
  })
})
