import { describe, expect, it } from "bun:test"
import { refusal } from "../src/daemon.ts"
import { BUILD_ID, parseAnswer, parseCall } from "../src/protocol.ts"

const call = { build: BUILD_ID, pid: process.pid, plugin: "bridge", env: { CNI_COMMAND: "ADD" }, stdin: "{}" }

describe("the resident tscni's wire format", () => {
  it("a call line round-trips; anything else is not a call", () => {
    expect(parseCall(JSON.stringify(call))).toEqual(call)
    expect(parseCall("not json")).toBeUndefined()
    expect(parseCall(JSON.stringify({ ...call, pid: "1" }))).toBeUndefined()
    expect(parseCall(JSON.stringify({ ...call, env: [] }))).toBeUndefined()
  })
  it("non-string env values are dropped, not passed on", () => {
    expect(parseCall(JSON.stringify({ ...call, env: { A: "1", B: 2 } }))?.env).toEqual({ A: "1" })
  })
  it("an answer is an outcome or a fallback; a cut-off answer is neither", () => {
    expect(parseAnswer(JSON.stringify({ stdout: "{}\n", exitCode: 0, stderr: "" }))).toEqual({ stdout: "{}\n", exitCode: 0, stderr: "" })
    expect(parseAnswer(JSON.stringify({ fallback: "why" }))).toEqual({ fallback: "why" })
    expect(parseAnswer('{"stdout":"{}')).toBeUndefined()
    expect(parseAnswer("")).toBeUndefined()
  })
})

describe("which calls the daemon serves", () => {
  it("a caller in this process's namespaces and of this build", () => {
    expect(refusal(call)).toBeUndefined()
  })
  it("not a caller of another build", () => {
    expect(refusal({ ...call, build: "another" })).toContain("build another")
  })
  it("not a caller whose namespaces cannot be seen (a pid that does not exist)", () => {
    expect(refusal({ ...call, pid: 2 ** 22 + 1 })).toBe("the caller runs in another network namespace")
  })
  it("a CNI_NETNS path that does not exist for either side is the same (DEL after the sandbox is gone)", () => {
    expect(refusal({ ...call, env: { CNI_NETNS: "/var/run/netns/tscni-does-not-exist" } })).toBeUndefined()
  })
})
