import { describe, expect, test } from "bun:test"
import { Cause, Effect, Exit, Option, Schema } from "effect"
import { CniError } from "@tscni/spec"
import {
  type ExecOutput,
  type IpamAllocateInput,
  ipamAllocate,
  IpamAllocateHandle,
  type PluginExec
} from "../src/index.ts"
import { makeFakeIpam } from "../src/testing/fakeIpam.ts"
import { makeFakePluginExec } from "../src/testing/fakePluginExec.ts"

const input = (overrides: Partial<IpamAllocateInput> = {}): IpamAllocateInput => ({
  pluginType: "fake-ipam",
  config: { cniVersion: "1.0.0", name: "net1", type: "bridge", ipam: { type: "fake-ipam" } },
  cniVersion: "1.0.0",
  containerId: "ctr1",
  netns: "/var/run/netns/ctr1",
  ifname: "eth0",
  args: "K8S_POD_NAME=p",
  cniPath: "/opt/cni/bin:/usr/lib/cni",
  ...overrides
})

const setup = () => {
  const ipam = makeFakeIpam()
  const exec = makeFakePluginExec({ "fake-ipam": ipam.plugin })
  const run = <A, E>(effect: Effect.Effect<A, E, PluginExec>) => Effect.runSyncExit(Effect.provide(effect, exec.layer))
  return { ipam, exec, run }
}

const failureOf = <A, E>(exit: Exit.Exit<A, E>): E | undefined =>
  Exit.isFailure(exit) ? Option.getOrUndefined(Cause.findErrorOption(exit.cause)) : undefined

describe("ipamAllocate (fake PluginExec)", () => {
  test("apply execs ADD with the CNI environment and config, and decodes the result", () => {
    const { ipam, exec, run } = setup()
    const exit = run(ipamAllocate.apply(input()))
    expect(Exit.isSuccess(exit)).toBe(true)
    if (!Exit.isSuccess(exit)) return
    expect(exit.value.result).toEqual({
      cniVersion: "1.0.0",
      ips: [{ address: "10.88.0.2/24", gateway: "10.88.0.1" }],
      routes: [{ dst: "0.0.0.0/0" }],
      dns: {}
    })
    expect([...ipam.allocations()]).toEqual([["ctr1/eth0", "10.88.0.2/24"]])
    const [call] = exec.calls()
    expect(call).toEqual({
      path: "/opt/cni/bin/fake-ipam",
      command: "ADD",
      env: {
        CNI_COMMAND: "ADD",
        CNI_CONTAINERID: "ctr1",
        CNI_NETNS: "/var/run/netns/ctr1",
        CNI_IFNAME: "eth0",
        CNI_ARGS: "K8S_POD_NAME=p",
        CNI_PATH: "/opt/cni/bin:/usr/lib/cni"
      },
      stdin: JSON.stringify(input().config)
    })
    // the handle survives a journal round trip
    const encoded = Schema.encodeSync(IpamAllocateHandle)(exit.value)
    expect(Schema.decodeUnknownSync(IpamAllocateHandle)(JSON.parse(JSON.stringify(encoded)))).toEqual(exit.value)
  })

  test("a 0.4.0 result is decoded in the config's version", () => {
    const { run } = setup()
    const exit = run(ipamAllocate.apply(input({ cniVersion: "0.4.0", config: { cniVersion: "0.4.0", name: "n" } })))
    expect(Exit.isSuccess(exit) && exit.value.result.ips).toEqual([{ address: "10.88.0.2/24", gateway: "10.88.0.1" }])
  })

  test("undo releases the allocation; undo twice is fine", () => {
    const { ipam, exec, run } = setup()
    const exit = run(Effect.gen(function*() {
      const handle = yield* ipamAllocate.apply(input())
      yield* ipamAllocate.undo(handle)
      const after = ipam.allocations().size
      yield* ipamAllocate.undo(handle)
      return after
    }))
    expect(exit).toEqual(Exit.succeed(0))
    expect(exec.calls().map((call) => call.command)).toEqual(["ADD", "DEL", "DEL"])
    expect(exec.calls()[1]?.stdin).toBe(JSON.stringify(input().config))
  })

  test("undo when the plugin binary is gone is fine; a DEL error is an error", () => {
    const { run } = setup()
    const handleExit = run(ipamAllocate.apply(input()))
    if (!Exit.isSuccess(handleExit)) throw new Error("apply failed")
    const handle = handleExit.value
    expect(Exit.isSuccess(run(ipamAllocate.undo({ ...handle, cniPath: "/elsewhere:" })))).toBe(true)
    expect(Exit.isSuccess(run(ipamAllocate.undo({ ...handle, cniPath: "" })))).toBe(true)

    const failing = makeFakePluginExec({
      "fake-ipam": (): ExecOutput => ({ exitCode: 1, stdout: '{"code":11,"msg":"store locked"}', stderr: "" })
    })
    const exit = Effect.runSyncExit(Effect.provide(ipamAllocate.undo(handle), failing.layer))
    expect(failureOf(exit)).toEqual(new CniError({ code: 11, msg: "store locked" }))
  })

  test("check runs CHECK with the IPAM result as prevResult, and fails after a manual change", () => {
    const { ipam, exec, run } = setup()
    const handleExit = run(ipamAllocate.apply(input()))
    if (!Exit.isSuccess(handleExit)) throw new Error("apply failed")
    expect(Exit.isSuccess(run(ipamAllocate.check(handleExit.value)))).toBe(true)
    const checkCall = exec.calls()[1]
    expect(checkCall?.command).toBe("CHECK")
    expect(JSON.parse(checkCall?.stdin ?? "{}").prevResult).toEqual({
      cniVersion: "1.0.0",
      ips: [{ address: "10.88.0.2/24", gateway: "10.88.0.1" }],
      routes: [{ dst: "0.0.0.0/0" }]
    })
    ipam.forget("ctr1", "eth0")
    expect(failureOf(run(ipamAllocate.check(handleExit.value)))).toEqual(
      new CniError({ code: 999, msg: "fake-ipam: no address for ctr1/eth0" })
    )
  })

  test("check is skipped below 0.4.0 (no CHECK verb)", () => {
    const { ipam, exec, run } = setup()
    const handleExit = run(ipamAllocate.apply(input({ cniVersion: "0.3.1", config: { cniVersion: "0.3.1" } })))
    if (!Exit.isSuccess(handleExit)) throw new Error("apply failed")
    ipam.forget("ctr1", "eth0")
    expect(Exit.isSuccess(run(ipamAllocate.check(handleExit.value)))).toBe(true)
    expect(exec.calls().map((call) => call.command)).toEqual(["ADD"])
  })

  test("an ADD error carries the plugin's code/msg and is followed by DEL", () => {
    const { ipam, exec, run } = setup()
    ipam.failAdd({ code: 11, msg: "no free addresses" })
    expect(failureOf(run(ipamAllocate.apply(input())))).toEqual(new CniError({ code: 11, msg: "no free addresses" }))
    expect(exec.calls().map((call) => call.command)).toEqual(["ADD", "DEL"])
  })

  test("exit != 0 without JSON is an I/O failure; garbage on success is a decode failure", () => {
    const crashing = makeFakePluginExec({
      crash: (): ExecOutput => ({ exitCode: 2, stdout: "", stderr: "segfault" }),
      garbage: (request): ExecOutput => ({
        exitCode: 0,
        stdout: request.command === "ADD" ? "not json" : "",
        stderr: ""
      }),
      invalid: (): ExecOutput => ({ exitCode: 0, stdout: '{"cniVersion":"1.0.0","ips":[{"address":"nope"}]}', stderr: "" })
    })
    const run = (pluginType: string) =>
      failureOf(Effect.runSyncExit(Effect.provide(ipamAllocate.apply(input({ pluginType })), crashing.layer)))
    expect(run("crash")?.code).toBe(5)
    expect(run("crash")?.details).toBe("segfault")
    expect(run("garbage")?.code).toBe(6)
    expect(run("invalid")?.code).toBe(6)
    expect(run("missing")?.code).toBe(5)
    // each failed ADD after the plugin ran is followed by DEL; a missing binary runs nothing
    expect(crashing.calls().map((call) => `${call.path.split("/").pop()} ${call.command}`)).toEqual([
      "crash ADD", "crash DEL", "crash ADD", "crash DEL",
      "garbage ADD", "garbage DEL", "invalid ADD", "invalid DEL"
    ])
  })
})
