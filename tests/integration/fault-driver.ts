/**
 * Runs one plugin invocation in-process on the real kernel with the k-th Backend call
 * failing, for fault-injection tests of compiled-plugin behaviour without a test hook in
 * the product: `ip netns exec HOST bun fault-driver.ts <plugin> <k> [fail|pause]` with the
 * plugin's env and stdin. Prints the plugin's stdout; the last stderr line is `calls=<n>`
 * (how many Backend calls were made, so the test knows whether call k happened at all).
 *
 * `pause` (for SIGKILL tests): instead of failing call k, the process stops itself right
 * before call k runs: it writes `paused=<k> op=<operation>` to stderr (synchronously, so the
 * line is in the pipe before the stop) and sends itself SIGSTOP. Calls 1…k-1 are done, call
 * k has not started. The test waits for the stop (state `T` in /proc/<pid>/stat) and
 * SIGKILLs it there: the kill lands at that exact point, not wherever a delay happened to
 * end. (`ip netns exec` execs, so the pid the test spawned is this process's.) A SIGCONT
 * instead lets the invocation go on. With k beyond the last call it runs the whole
 * invocation, and `calls=<n>` says how many kill points there are.
 *
 * `hold` (for races made on purpose): stops right before call k as `pause` does, and when
 * continued (SIGCONT) fails call k as `fail` does: the test runs something else while the
 * invocation is held at a known point, then lets it fail there.
 */
import { writeSync } from "node:fs"
import { Effect, Layer } from "effect"
import { Backend, BackendError, type BackendShape } from "@tscni/backend"
import { makeLinuxBackend } from "@tscni/backend-linux"
import { bandwidthPlugin } from "@tscni/plugin-bandwidth"
import { bridgePlugin } from "@tscni/plugin-bridge"
import { firewallPlugin } from "@tscni/plugin-firewall"
import { DEFAULT_OPTIONS, makeTuningPlugin } from "@tscni/plugin-tuning"
import { portmapPlugin } from "@tscni/plugin-portmap"
import { ptpPlugin } from "@tscni/plugin-ptp"
// by path: the tests package does not list @tscni/plugin-loopback among its dependencies
import { loopbackPlugin } from "../../packages/plugins/loopback/src/index.ts"
import { handleInvocation, loggingLayer, type PluginDefinition } from "@tscni/skel"
import { PluginExec } from "@tscni/steps"

const PLUGINS: Record<string, PluginDefinition<Backend | PluginExec>> = {
  loopback: loopbackPlugin,
  bridge: bridgePlugin,
  portmap: portmapPlugin,
  bandwidth: bandwidthPlugin,
  firewall: firewallPlugin,
  ptp: ptpPlugin,
  tuning: makeTuningPlugin({ ...DEFAULT_OPTIONS, allowlistPath: process.env.TSCNI_TUNING_ALLOWLIST ?? DEFAULT_OPTIONS.allowlistPath })
}

const [name, kText, mode = "fail"] = process.argv.slice(2)
const plugin = PLUGINS[name ?? ""]
const k = Number(kText)
if (!plugin || !Number.isInteger(k) || !["fail", "pause", "hold"].includes(mode)) {
  console.error("usage: fault-driver.ts <plugin> <k> [fail|pause|hold]")
  process.exit(2)
}

let calls = 0
const real = makeLinuxBackend()
/** Every operation of the real backend, the k-th one failing (or, in pause mode, stopping the process) before it runs. */
const faulty = Object.fromEntries(
  Object.entries(real).map(([operation, run]) => [
    operation,
    (...args: Array<unknown>) =>
      Effect.suspend(() => {
        calls++
        if (calls === k && mode !== "fail") {
          writeSync(2, `paused=${k} op=${operation}\n`)
          process.kill(process.pid, "SIGSTOP")
        }
        if (calls === k && mode !== "pause") {
          return Effect.fail(new BackendError({ operation, reason: "Injected", message: `${operation}: injected fault at call ${k}` }))
        }
        return (run as (...a: Array<unknown>) => Effect.Effect<unknown, BackendError>)(...args)
      })
  ])
) as unknown as BackendShape

// logs to stderr as in the real plugin (stdout carries only the result)
const layer = Layer.mergeAll(Layer.succeed(Backend)(faulty), PluginExec.layer, loggingLayer(process.env))
const outcome = await Effect.runPromise(
  handleInvocation(plugin, { env: process.env, stdin: Effect.promise(() => Bun.stdin.text()) }).pipe(Effect.provide(layer))
)
process.stdout.write(outcome.stdout)
process.stderr.write(`calls=${calls}\n`)
process.exitCode = outcome.exitCode
