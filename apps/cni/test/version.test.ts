import { describe, expect, test } from "bun:test"
import { Effect } from "effect"
import { chooseVersion, negotiateListVersion, offeredVersions, type VersionAnswer } from "../src/version.ts"

const ALL = ["0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0"]

describe("version negotiation", () => {
  const table: ReadonlyArray<{
    readonly name: string
    readonly cniVersion: string
    readonly cniVersions?: ReadonlyArray<string>
    readonly answers: ReadonlyArray<VersionAnswer>
    readonly expected: string | { code: number }
  }> = [
    { name: "cniVersion only: used as is", cniVersion: "0.4.0", answers: [], expected: "0.4.0" },
    { name: "highest of the union that all support", cniVersion: "0.4.0", cniVersions: ["1.0.0", "1.1.0"], answers: [ALL, ALL], expected: "1.1.0" },
    { name: "one plugin without 1.1.0", cniVersion: "0.4.0", cniVersions: ["1.0.0", "1.1.0"], answers: [ALL, ["0.4.0", "1.0.0"]], expected: "1.0.0" },
    { name: "cniVersion counts as offered", cniVersion: "1.0.0", cniVersions: ["0.4.0"], answers: [ALL], expected: "1.0.0" },
    { name: "only the oldest is common", cniVersion: "0.3.1", cniVersions: ["1.1.0"], answers: [["0.3.1"], ALL], expected: "0.3.1" },
    { name: "versions tscni does not speak are ignored", cniVersion: "1.0.0", cniVersions: ["2.0.0", "1.1.0"], answers: [["2.0.0", "1.1.0"]], expected: "1.1.0" },
    { name: "a plugin that cannot be asked: cniVersion", cniVersion: "1.0.0", cniVersions: ["1.1.0"], answers: [ALL, undefined], expected: "1.0.0" },
    { name: "nothing common: code 1", cniVersion: "1.0.0", cniVersions: ["1.1.0"], answers: [["0.3.1"]], expected: { code: 1 } },
    { name: "unsupported cniVersion alone: code 1", cniVersion: "0.2.0", answers: [], expected: { code: 1 } }
  ]
  for (const row of table) {
    test(row.name, async () => {
      const list = { name: "n", cniVersion: row.cniVersion, ...(row.cniVersions ? { cniVersions: row.cniVersions } : {}) }
      const outcome = await Effect.runPromise(Effect.result(chooseVersion(list, row.answers)))
      if (typeof row.expected === "string") {
        expect(outcome._tag).toBe("Success")
        if (outcome._tag === "Success") expect(outcome.success).toBe(row.expected)
      } else {
        expect(outcome._tag).toBe("Failure")
        if (outcome._tag === "Failure") expect(outcome.failure.code).toBe(row.expected.code)
      }
    })
  }

  test("offered versions are distinct, highest first", () => {
    expect(offeredVersions({ cniVersion: "0.4.0", cniVersions: ["1.0.0", "0.4.0", "1.1.0"] })).toEqual(["1.1.0", "1.0.0", "0.4.0"])
  })

  test("each plugin type is asked once, and only when the list has cniVersions", async () => {
    const asked: Array<string> = []
    const ask = (type: string) => Effect.sync(() => (asked.push(type), type === "old" ? ["0.4.0", "1.0.0"] : ALL))
    const plugins = [{ type: "a" }, { type: "old" }, { type: "a" }]
    expect(await Effect.runPromise(negotiateListVersion({ name: "n", cniVersion: "1.0.0", plugins }, ask))).toBe("1.0.0")
    expect(asked).toEqual([])
    expect(await Effect.runPromise(negotiateListVersion({ name: "n", cniVersion: "1.0.0", cniVersions: ["1.1.0"], plugins }, ask))).toBe("1.0.0")
    expect(asked).toEqual(["a", "old"])
  })

  test("a failing VERSION means the list's cniVersion", async () => {
    const ask = (type: string) => (type === "broken" ? Effect.fail("no") : Effect.succeed(ALL))
    const plugins = [{ type: "ok" }, { type: "broken" }]
    expect(await Effect.runPromise(negotiateListVersion({ name: "n", cniVersion: "0.4.0", cniVersions: ["1.1.0"], plugins }, ask))).toBe("0.4.0")
  })
})
