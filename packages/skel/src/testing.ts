/**
 * For plugin tests on the mock kernel: the environment a runtime passes for one attachment,
 * and one invocation of a plugin with a JSON config, its stdout parsed.
 */
import { Effect } from "effect"
import type { PluginDefinition } from "./plugin.ts"
import { handleInvocation, type Outcome } from "./run.ts"

/** CNI_* for one attachment, as a runtime passes them (CNI_PATH is never searched on the mock). */
export const attachmentEnv = (command: string, containerId: string, netns: string, ifname = "eth0"): Record<string, string> => ({
  CNI_COMMAND: command,
  CNI_CONTAINERID: containerId,
  CNI_NETNS: netns,
  CNI_IFNAME: ifname,
  CNI_PATH: "/opt/cni/bin"
})

/** An outcome with its stdout parsed (undefined when empty). */
export interface ParsedOutcome extends Outcome {
  readonly json: Record<string, any> | undefined
}

/** Invokes `plugin` with `env` and `conf` as its stdin. */
export const invokePlugin = <R>(plugin: PluginDefinition<R>) => (env: Record<string, string>, conf: unknown): Effect.Effect<ParsedOutcome, never, R> =>
  handleInvocation(plugin, { env, stdin: Effect.succeed(JSON.stringify(conf)) }).pipe(
    Effect.map((outcome) => ({ ...outcome, json: outcome.stdout === "" ? undefined : (JSON.parse(outcome.stdout) as Record<string, any>) }))
  )
