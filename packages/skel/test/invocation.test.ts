import { describe, expect, test } from "bun:test"
import { Effect } from "effect"
import { BackendError } from "@tscni/backend"
import { CheckFailed } from "@tscni/engine"
import type { Result } from "@tscni/spec"
import { handleInvocation, type Outcome, type PluginDefinition } from "../src/index.ts"

const RESULT: Result = {
  cniVersion: "1.1.0",
  interfaces: [{ name: "eth0", mac: "0a:58:0a:01:00:02", sandbox: "/var/run/netns/x" }],
  ips: [{ address: "10.1.0.2/24", gateway: "10.1.0.1", interface: 0 }],
  routes: [{ dst: "0.0.0.0/0", gw: "10.1.0.1", priority: 5 }]
}

/** Records what the skeleton handed to the plugin. */
const calls: Array<string> = []
const fakePlugin = (overrides: Partial<PluginDefinition<never>> = {}): PluginDefinition<never> => ({
  name: "fake",
  add: () => Effect.sync(() => (calls.push("ADD"), RESULT)),
  check: () => Effect.sync(() => void calls.push("CHECK")),
  del: () => Effect.sync(() => void calls.push("DEL")),
  ...overrides
})

const ADD_ENV = {
  CNI_COMMAND: "ADD",
  CNI_CONTAINERID: "abc123",
  CNI_NETNS: "/var/run/netns/x",
  CNI_IFNAME: "eth0",
  CNI_PATH: "/opt/cni/bin"
}

const conf = (extra: Record<string, unknown> = {}) =>
  JSON.stringify({ cniVersion: "1.0.0", name: "net1", type: "fake", ...extra })

const invoke = (
  env: Record<string, string | undefined>,
  stdin: string,
  plugin: PluginDefinition<never> = fakePlugin()
): Promise<Outcome> => Effect.runPromise(handleInvocation(plugin, { env, stdin: Effect.succeed(stdin) }))

const errorOf = (outcome: Outcome) => {
  expect(outcome.exitCode).toBe(1)
  // exactly one JSON document on stdout, nothing else
  expect(outcome.stdout.trim().split("\n")).toHaveLength(1)
  return JSON.parse(outcome.stdout) as { code: number; msg: string; cniVersion: string; details?: string }
}

describe("environment validation (code 4, naming the variable)", () => {
  const cases: Array<[string, Record<string, string | undefined>, string]> = [
    ["CNI_COMMAND missing", { ...ADD_ENV, CNI_COMMAND: undefined }, "CNI_COMMAND"],
    ["CNI_COMMAND unknown", { ...ADD_ENV, CNI_COMMAND: "ATTACH" }, "CNI_COMMAND"],
    ["CNI_CONTAINERID missing", { ...ADD_ENV, CNI_CONTAINERID: "" }, "CNI_CONTAINERID"],
    ["CNI_CONTAINERID bad characters", { ...ADD_ENV, CNI_CONTAINERID: "-abc/def" }, "CNI_CONTAINERID"],
    ["CNI_NETNS missing for ADD", { ...ADD_ENV, CNI_NETNS: undefined }, "CNI_NETNS"],
    ["CNI_NETNS missing for CHECK", { ...ADD_ENV, CNI_COMMAND: "CHECK", CNI_NETNS: "" }, "CNI_NETNS"],
    ["CNI_IFNAME missing", { ...ADD_ENV, CNI_IFNAME: undefined }, "CNI_IFNAME"],
    ["CNI_IFNAME too long", { ...ADD_ENV, CNI_IFNAME: "a234567890123456" }, "CNI_IFNAME"],
    ["CNI_IFNAME with a slash", { ...ADD_ENV, CNI_IFNAME: "eth/0" }, "CNI_IFNAME"],
    ["CNI_IFNAME dot", { ...ADD_ENV, CNI_IFNAME: "." }, "CNI_IFNAME"],
    // 8 characters but 16 bytes: the kernel counts bytes
    ["CNI_IFNAME of 16 bytes", { ...ADD_ENV, CNI_IFNAME: "éééééééé" }, "CNI_IFNAME"],
    ["CNI_ARGS malformed", { ...ADD_ENV, CNI_ARGS: "IgnoreUnknown=1;garbage" }, "CNI_ARGS"],
    ["CNI_ARGS empty key", { ...ADD_ENV, CNI_ARGS: "=value" }, "CNI_ARGS"],
    // libcni's LoadArgs: exactly one '=' per element; IgnoreUnknown a boolean — for every plugin
    ["CNI_ARGS with a second '='", { ...ADD_ENV, CNI_ARGS: "K=V=W" }, "CNI_ARGS"],
    ["CNI_ARGS IgnoreUnknown not a boolean", { ...ADD_ENV, CNI_ARGS: "IgnoreUnknown=maybe;FOO=bar" }, "CNI_ARGS"],
    // the plugin's own namespace is no container's: it would configure the host
    ["CNI_NETNS the plugin's own namespace", { ...ADD_ENV, CNI_NETNS: "/proc/self/ns/net" }, "CNI_NETNS"],
    ["CNI_NETNS the plugin's own namespace, for DEL", { ...ADD_ENV, CNI_COMMAND: "DEL", CNI_NETNS: "/proc/self/ns/net" }, "CNI_NETNS"]
  ]
  for (const [label, env, variable] of cases) {
    test(label, async () => {
      calls.length = 0
      const error = errorOf(await invoke(env, conf()))
      expect(error.code).toBe(4)
      expect(error.msg).toContain(variable)
      expect(calls).toEqual([])
    })
  }

  test("CNI_ARGS keys a plugin does not read are code 4 unless IgnoreUnknown is true; a plugin that reads none takes any", async () => {
    const reading = fakePlugin({ cniArgs: ["MAC"] })
    const outcome = (args: string, plugin = reading) => invoke({ ...ADD_ENV, CNI_ARGS: args }, conf(), plugin)
    for (const [args, ok] of [
      ["MAC=0a:58:0a:01:00:02", true],
      ["K8S_POD_NAME=web", false],
      ["IgnoreUnknown=0;FOO=1", false],
      ["IgnoreUnknown=1;FOO=1;K8S_POD_NAME=web", true],
      ["IgnoreUnknown=TRUE;FOO=1", true]
    ] as const) {
      const out = await outcome(args)
      if (ok) expect({ args, code: out.exitCode }).toEqual({ args, code: 0 })
      else expect({ args, error: errorOf(out) }).toEqual({ args, error: expect.objectContaining({ code: 4, msg: expect.stringContaining("CNI_ARGS: unknown args") }) })
    }
    expect((await outcome("K8S_POD_NAME=web", fakePlugin())).exitCode).toBe(0)
  })

  test("DEL without CNI_NETNS reaches the plugin", async () => {
    calls.length = 0
    const outcome = await invoke({ ...ADD_ENV, CNI_COMMAND: "DEL", CNI_NETNS: "" }, conf())
    expect(outcome).toEqual({ stdout: "", exitCode: 0 })
    expect(calls).toEqual(["DEL"])
  })

  test("GC and STATUS need no container variables", async () => {
    for (const command of ["GC", "STATUS"]) {
      const outcome = await invoke({ CNI_COMMAND: command }, conf({ cniVersion: "1.1.0" }))
      expect(outcome).toEqual({ stdout: "", exitCode: 0 })
    }
  })
})

describe("configuration and versions", () => {
  test("bad JSON is code 6", async () => {
    expect(errorOf(await invoke(ADD_ENV, "{not json")).code).toBe(6)
  })
  test("empty stdin is code 6", async () => {
    expect(errorOf(await invoke(ADD_ENV, "")).code).toBe(6)
  })
  test("missing cniVersion is code 7 naming it", async () => {
    const error = errorOf(await invoke(ADD_ENV, JSON.stringify({ name: "n", type: "fake" })))
    expect(error.code).toBe(7)
    expect(error.msg).toContain("cniVersion")
  })
  test("missing type is code 7 naming it", async () => {
    const error = errorOf(await invoke(ADD_ENV, JSON.stringify({ cniVersion: "1.0.0", name: "n" })))
    expect(error.code).toBe(7)
    expect(error.msg).toContain("type")
  })
  test("an invalid network name is code 7 naming it", async () => {
    const error = errorOf(await invoke(ADD_ENV, conf({ name: "-bad name" })))
    expect(error.code).toBe(7)
    expect(error.msg).toContain("name")
  })
  test("an unsupported version is code 1", async () => {
    for (const version of ["0.2.0", "9.9.9"]) {
      const error = errorOf(await invoke(ADD_ENV, conf({ cniVersion: version })))
      expect(error.code).toBe(1)
    }
  })
  test("CHECK does not exist before 0.4.0; GC and STATUS before 1.1.0", async () => {
    const prevResult = { cniVersion: "0.3.1", ips: [] }
    expect(errorOf(await invoke({ ...ADD_ENV, CNI_COMMAND: "CHECK" }, conf({ cniVersion: "0.3.1", prevResult }))).code)
      .toBe(1)
    expect(errorOf(await invoke({ CNI_COMMAND: "GC" }, conf({ cniVersion: "1.0.0" }))).code).toBe(1)
    expect(errorOf(await invoke({ CNI_COMMAND: "STATUS" }, conf({ cniVersion: "1.0.0" }))).code).toBe(1)
  })
  test("CHECK without prevResult is code 7", async () => {
    const error = errorOf(await invoke({ ...ADD_ENV, CNI_COMMAND: "CHECK" }, conf()))
    expect(error.code).toBe(7)
    expect(error.msg).toContain("prevResult")
  })
  test("an interface name in prevResult the kernel would refuse is code 7 naming it, before the plugin runs", async () => {
    for (const name of ["x".repeat(65_531), "a234567890123456", "br\u0000x", "eth/0"]) {
      calls.length = 0
      const prevResult = { ...RESULT, cniVersion: "1.0.0", interfaces: [RESULT.interfaces![0]!, { name }] }
      const error = errorOf(await invoke(ADD_ENV, conf({ prevResult })))
      expect({ code: error.code, msg: error.msg.slice(0, 32) }).toEqual({ code: 7, msg: "prevResult.interfaces[1].name: \"" })
      expect(calls).toEqual([])
    }
  })
  test("a prevResult that does not decode is code 6", async () => {
    const error = errorOf(await invoke(ADD_ENV, conf({ prevResult: { ips: [{ address: "nonsense" }] } })))
    expect(error.code).toBe(6)
  })
  test("the error carries the config's cniVersion", async () => {
    const error = errorOf(await invoke({ ...ADD_ENV, CNI_IFNAME: "" }, conf({ cniVersion: "0.4.0" })))
    // env is validated before stdin is read, so the version is not known yet: the latest is used
    expect(error.cniVersion).toBe("1.1.0")
    const late = errorOf(await invoke(ADD_ENV, conf({ cniVersion: "0.4.0", prevResult: { bad: true, ips: "x" } })))
    expect(late.cniVersion).toBe("0.4.0")
  })
})

describe("dispatch and output", () => {
  test("VERSION prints the supported versions", async () => {
    const outcome = await invoke({ CNI_COMMAND: "VERSION" }, "")
    expect(outcome.exitCode).toBe(0)
    expect(JSON.parse(outcome.stdout)).toEqual({
      cniVersion: "1.1.0",
      supportedVersions: ["0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0"]
    })
  })

  test("ADD prints the result in the config's version", async () => {
    const v040 = JSON.parse((await invoke(ADD_ENV, conf({ cniVersion: "0.4.0" }))).stdout)
    expect(v040.cniVersion).toBe("0.4.0")
    expect(v040.ips[0].version).toBe("4")
    expect(v040.routes[0].priority).toBeUndefined()
    const v110 = JSON.parse((await invoke(ADD_ENV, conf({ cniVersion: "1.1.0" }))).stdout)
    expect(v110.ips[0].version).toBeUndefined()
    expect(v110.routes[0].priority).toBe(5)
  })

  test("CHECK and DEL print nothing on success", async () => {
    calls.length = 0
    const prevResult = { ...RESULT, cniVersion: "1.0.0" }
    const check = await invoke({ ...ADD_ENV, CNI_COMMAND: "CHECK" }, conf({ prevResult }))
    const del = await invoke({ ...ADD_ENV, CNI_COMMAND: "DEL" }, conf({ prevResult }))
    expect([check, del]).toEqual([{ stdout: "", exitCode: 0 }, { stdout: "", exitCode: 0 }])
    expect(calls).toEqual(["CHECK", "DEL"])
  })

  test("a BackendError becomes code 5; a missing namespace code 3", async () => {
    const failing = (netns: boolean) =>
      fakePlugin({
        add: () =>
          Effect.fail(
            new BackendError({ operation: "getLink", reason: "NotFound", message: "ENOENT", ...(netns ? { netns: true as const } : {}) })
          )
      })
    expect(errorOf(await invoke(ADD_ENV, conf(), failing(false))).code).toBe(5)
    expect(errorOf(await invoke(ADD_ENV, conf(), failing(true))).code).toBe(3)
  })

  test("CheckFailed names the step", async () => {
    const plugin = fakePlugin({ check: () => Effect.fail(new CheckFailed({ step: "linkUp", message: "lo is down" })) })
    const prevResult = { ...RESULT, cniVersion: "1.0.0" }
    const error = errorOf(await invoke({ ...ADD_ENV, CNI_COMMAND: "CHECK" }, conf({ prevResult }), plugin))
    expect(error.code).toBe(100)
    expect(error.msg).toContain("linkUp")
  })

  test("an ADD result that cannot be encoded is undone with DEL and reported as code 100", async () => {
    calls.length = 0
    const invalid = { ...RESULT, ips: [{ address: "not-an-ip" }] } as unknown as Result
    const plugin = fakePlugin({ add: () => Effect.sync(() => (calls.push("ADD"), invalid)) })
    const error = errorOf(await invoke(ADD_ENV, conf(), plugin))
    expect(error.code).toBe(100)
    expect(error.msg).toContain("invalid result")
    expect(calls).toEqual(["ADD", "DEL"])
  })

  test("…and when that DEL fails too, the error says so (nothing is dropped in silence)", async () => {
    calls.length = 0
    const invalid = { ...RESULT, ips: [{ address: "not-an-ip" }] } as unknown as Result
    const plugin = fakePlugin({
      add: () => Effect.sync(() => (calls.push("ADD"), invalid)),
      del: () => Effect.sync(() => void calls.push("DEL")).pipe(Effect.andThen(Effect.fail(new BackendError({ operation: "deleteLink", reason: "Busy", message: "deleteLink: busy" }))))
    })
    const error = errorOf(await invoke(ADD_ENV, conf(), plugin))
    expect(error.code).toBe(100)
    expect(error.msg).toContain("invalid result")
    expect(error.details).toContain("undoing the ADD failed too")
    expect(error.details).toContain("deleteLink: busy")
    expect(calls).toEqual(["ADD", "DEL"])
  })

  test("a defect becomes code 100 with its message and no stack trace", async () => {
    const plugin = fakePlugin({ add: () => Effect.die(new Error("boom")) })
    const outcome = await invoke(ADD_ENV, conf(), plugin)
    const error = errorOf(outcome)
    expect(error.code).toBe(100)
    expect(error.msg).toBe("boom")
    expect(outcome.stdout).not.toContain("    at ")
  })
})
