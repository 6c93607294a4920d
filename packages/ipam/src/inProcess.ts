import { Effect } from "effect"
import { handleInvocation, type Outcome } from "@tscni/skel"
import type { ExecOutput, ExecRequest, InProcessPlugin } from "@tscni/steps"
import { diskStoreLayer } from "./hostLocal/diskStore.ts"
import { hostLocalPlugin } from "./hostLocal/plugin.ts"
import { staticPlugin } from "./static/plugin.ts"

const toExecOutput = (outcome: Outcome): ExecOutput => ({ stdout: outcome.stdout, exitCode: outcome.exitCode, stderr: "" })

const invocation = (request: ExecRequest) => ({ env: request.env, stdin: Effect.succeed(request.stdin) })

/** tscni's IPAM plugins, runnable in-process by a plugin that delegates to them (see withInProcess). */
export const inProcessIpam: Readonly<Record<string, InProcessPlugin>> = {
  "host-local": (request) =>
    handleInvocation(hostLocalPlugin, invocation(request)).pipe(Effect.provide(diskStoreLayer), Effect.map(toExecOutput)),
  static: (request) => handleInvocation(staticPlugin, invocation(request)).pipe(Effect.map(toExecOutput))
}
