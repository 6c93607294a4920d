import { describe, expect, test } from "bun:test"
import {
  LATEST_VERSION,
  SUPPORTED_VERSIONS,
  compareVersions,
  isSupportedVersion,
  negotiateVersion,
  verbSupported,
  versionInfo,
  type Verb
} from "../src/index.ts"

describe("versions", () => {
  test("supported list and latest", () => {
    expect(SUPPORTED_VERSIONS).toEqual(["0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0"])
    expect(LATEST_VERSION).toBe("1.1.0")
    expect(isSupportedVersion("0.4.0")).toBe(true)
    expect(isSupportedVersion("0.2.0")).toBe(false)
    expect(isSupportedVersion("1.1")).toBe(false)
    expect(isSupportedVersion("")).toBe(false)
  })

  test("compareVersions is numeric, not lexical", () => {
    expect(compareVersions("0.3.1", "0.3.0")).toBeGreaterThan(0)
    expect(compareVersions("0.4.0", "1.0.0")).toBeLessThan(0)
    expect(compareVersions("1.0.0", "1.0.0")).toBe(0)
    expect(compareVersions("0.10.0", "0.9.0")).toBeGreaterThan(0)
    expect(compareVersions("1.0", "1.0.0")).toBe(0)
    const shuffled = ["1.1.0", "0.3.0", "1.0.0", "0.4.0", "0.3.1"]
    expect([...shuffled].sort(compareVersions)).toEqual([...SUPPORTED_VERSIONS])
  })

  // spec table: which verbs exist in which version
  const table: ReadonlyArray<[string, ReadonlyArray<Verb>, ReadonlyArray<Verb>]> = [
    ["0.1.0", ["ADD", "DEL", "VERSION"], ["CHECK", "GC", "STATUS"]],
    ["0.3.0", ["ADD", "DEL", "VERSION"], ["CHECK", "GC", "STATUS"]],
    ["0.3.1", ["ADD", "DEL", "VERSION"], ["CHECK", "GC", "STATUS"]],
    ["0.4.0", ["ADD", "DEL", "VERSION", "CHECK"], ["GC", "STATUS"]],
    ["1.0.0", ["ADD", "DEL", "VERSION", "CHECK"], ["GC", "STATUS"]],
    ["1.1.0", ["ADD", "DEL", "VERSION", "CHECK", "GC", "STATUS"], []]
  ]
  for (const [version, yes, no] of table) {
    test(`verbSupported at ${version}`, () => {
      for (const verb of yes) expect([verb, verbSupported(verb, version)]).toEqual([verb, true])
      for (const verb of no) expect([verb, verbSupported(verb, version)]).toEqual([verb, false])
    })
  }

  test("negotiateVersion picks the highest common version", () => {
    expect(negotiateVersion(["0.4.0", "1.0.0", "1.1.0"])).toBe("1.1.0")
    expect(negotiateVersion(["1.1.0", "0.4.0", "1.0.0"], ["0.3.1", "0.4.0", "1.0.0"])).toBe("1.0.0")
    expect(negotiateVersion(["0.3.1", "2.0.0"])).toBe("0.3.1")
    expect(negotiateVersion(["0.2.0", "2.0.0"])).toBeUndefined()
    expect(negotiateVersion([])).toBeUndefined()
    expect(negotiateVersion(["1.0.0"], [])).toBeUndefined()
  })

  test("versionInfo is the VERSION output", () => {
    expect(versionInfo()).toEqual({ cniVersion: "1.1.0", supportedVersions: [...SUPPORTED_VERSIONS] })
    expect(versionInfo(["0.4.0"])).toEqual({ cniVersion: "1.1.0", supportedVersions: ["0.4.0"] })
  })
})
