/** Shared test helpers: run a plugin through the real skeleton against a chosen layer. */
import { Effect, Layer, Logger } from "effect"
import { handleInvocation, type PluginDefinition } from "@tscni/skel"

export interface Invoked {
  readonly exitCode: number
  readonly stdout: string
  readonly json: Record<string, unknown> | undefined
}

/** The CNI_* environment a runtime passes. */
export const cniEnv = (
  command: string,
  extra: Record<string, string> = {}
): Record<string, string> => ({
  CNI_COMMAND: command,
  CNI_CONTAINERID: "c1",
  CNI_NETNS: "/var/run/netns/pod",
  CNI_IFNAME: "eth0",
  CNI_PATH: "/opt/cni/bin",
  ...extra
})

/** One invocation through handleInvocation (env + stdin → stdout + exit code); logs are dropped. */
export const invoke = <R>(
  plugin: PluginDefinition<R>,
  layer: Layer.Layer<R>,
  env: Record<string, string>,
  conf: unknown
): Promise<Invoked> =>
  Effect.runPromise(
    handleInvocation(plugin, { env, stdin: Effect.succeed(JSON.stringify(conf)) }).pipe(
      Effect.provide(Layer.mergeAll(layer, Logger.layer([]))),
      Effect.map((outcome) => ({
        ...outcome,
        json: outcome.stdout === "" ? undefined : (JSON.parse(outcome.stdout) as Record<string, unknown>)
      }))
    )
  )

/** The addresses of a result's `ips`. */
export const addressesOf = (json: Record<string, unknown> | undefined): Array<string> =>
  ((json?.ips ?? []) as Array<{ address: string }>).map((entry) => entry.address)
