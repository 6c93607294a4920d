import { describe, expect, it } from "bun:test"
import { Effect, Layer } from "effect"
import { CallerEnvironment } from "@tscni/spec"
import type { PluginDefinition } from "../src/plugin.ts"
import { bindPlugin } from "../src/run.ts"

/** A plugin that reports what a delegated plugin would inherit: the caller's FOO. */
const echoEnvironment: PluginDefinition<never> = {
  name: "echo-env",
  add: (request) =>
    Effect.gen(function*() {
      const environment = yield* CallerEnvironment
      return { cniVersion: request.conf.cniVersion, dns: { domain: environment.FOO ?? "unset" } }
    }),
  check: () => Effect.void,
  del: () => Effect.void
}

const env = { CNI_COMMAND: "ADD", CNI_CONTAINERID: "c1", CNI_NETNS: "/var/run/netns/p1", CNI_IFNAME: "eth0", CNI_PATH: "/opt/cni/bin", FOO: "from-the-caller" }
const stdin = JSON.stringify({ cniVersion: "1.0.0", name: "n", type: "echo-env" })

describe("bindPlugin", () => {
  it("a call sees its own caller's environment, not the process's (what the resident daemon relies on)", async () => {
    const outcome = await Effect.runPromise(bindPlugin(echoEnvironment, Layer.empty).invoke({ env, stdin: Effect.succeed(stdin) }))
    expect(outcome.exitCode).toBe(0)
    expect(JSON.parse(outcome.stdout).dns).toEqual({ domain: "from-the-caller" })
  })
  it("log lines go to the sink when one is given, with the note first", async () => {
    const lines: Array<string> = []
    await Effect.runPromise(
      bindPlugin(echoEnvironment, Layer.empty).invoke({ env: { ...env, TSCNI_LOG: "debug" }, stdin: Effect.succeed(stdin) }, { log: (line) => void lines.push(line), note: "the note" })
    )
    expect(lines[0]).toContain("the note")
  })
})
