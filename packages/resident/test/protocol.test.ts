import { describe, expect, it } from "bun:test"
import { statSync } from "node:fs"
import { refusal } from "../src/daemon.ts"
import { BUILD_ID, lineReader, MAX_LINE_BYTES, parseCall, parseOutcome, parseReply, viewOf } from "../src/protocol.ts"

const view = await viewOf("")
const call = { build: BUILD_ID, view, plugin: "bridge", env: { CNI_COMMAND: "ADD" }, stdin: "{}" }

describe("the resident tscni's wire format", () => {
  it("a call line round-trips; anything else is not a call", () => {
    expect(parseCall(JSON.stringify(call))).toEqual(call)
    expect(parseCall("not json")).toBeUndefined()
    expect(parseCall(JSON.stringify({ ...call, view: { ...view, root: 1 } }))).toBeUndefined()
    expect(parseCall(JSON.stringify({ ...call, env: [] }))).toBeUndefined()
  })
  it("non-string env values are dropped, not passed on", () => {
    expect(parseCall(JSON.stringify({ ...call, env: { A: "1", B: 2 } }))?.env).toEqual({ A: "1" })
  })
  it("the daemon's reply is ready or a fallback; its outcome has stdout, exit code and stderr; a cut-off line is neither", () => {
    expect(parseReply('{"ready":true}')).toEqual({ ready: true })
    expect(parseReply('{"fallback":"why"}')).toEqual({ fallback: "why" })
    expect(parseReply('{"ready":"yes"}')).toBeUndefined()
    expect(parseOutcome(JSON.stringify({ stdout: "{}\n", exitCode: 0, stderr: "" }))).toEqual({ stdout: "{}\n", exitCode: 0, stderr: "" })
    expect(parseOutcome('{"stdout":"{}')).toBeUndefined()
  })
  it("lines are cut at newlines and decoded whole: a UTF-8 character split between two reads stays one character", () => {
    const reader = lineReader()
    const bytes = Buffer.from("héllo\nwörld\n")
    // split inside "é" (2 bytes) and inside "ö"
    expect(reader.push(bytes.subarray(0, 2))).toEqual([])
    expect(reader.push(bytes.subarray(2, 9))).toEqual(["héllo"])
    expect(reader.push(bytes.subarray(9))).toEqual(["wörld"])
  })
  it("a line longer than the limit is flagged", () => {
    const reader = lineReader()
    reader.push(new Uint8Array(MAX_LINE_BYTES + 1))
    expect(reader.tooLong()).toBe(true)
  })
})

describe("a process's view", () => {
  it("is device:inode of its network namespace, its root and the pod path, as stat(2) gives them; '' for what does not exist", async () => {
    const id = (path: string) => `${statSync(path).dev}:${statSync(path).ino}`
    expect(await viewOf("/proc/self/ns/net")).toEqual({ netns: id("/proc/self/ns/net"), root: id("/"), podNetns: id("/proc/self/ns/net") })
    expect((await viewOf("/var/run/netns/tscni-does-not-exist")).podNetns).toBe("")
    expect((await viewOf("relative/path")).podNetns).toBe("")
  })
})

describe("which calls the daemon serves", () => {
  it("a caller of this build with this process's view", () => {
    expect(refusal(call, view)).toBeUndefined()
  })
  it("not a caller of another build", () => {
    expect(refusal({ ...call, build: "another" }, view)).toContain("build another")
  })
  it("not a caller in another network namespace, with another root, or seeing CNI_NETNS as another namespace", () => {
    expect(refusal({ ...call, view: { ...view, netns: "9:9" } }, view)).toBe("the caller runs in another network namespace")
    expect(refusal({ ...call, view: { ...view, netns: "" } }, { ...view, netns: "" })).toBe("the caller runs in another network namespace")
    expect(refusal({ ...call, view: { ...view, root: "9:9" } }, view)).toBe("the caller has another root directory")
    expect(refusal({ ...call, env: { CNI_NETNS: "/var/run/netns/x" }, view: { ...view, podNetns: "9:9" } }, view)).toContain("/var/run/netns/x names another namespace")
  })
  it("a CNI_NETNS that exists for neither side is the same (DEL after the sandbox is gone)", async () => {
    const env = { CNI_NETNS: "/var/run/netns/tscni-does-not-exist" }
    expect(refusal({ ...call, env, view: await viewOf(env.CNI_NETNS) }, await viewOf(env.CNI_NETNS))).toBeUndefined()
  })
})
