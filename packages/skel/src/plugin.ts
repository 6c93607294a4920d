import type { Effect } from "effect"
import type { BackendError } from "@tscni/backend"
import type { CheckFailed, Pipeline } from "@tscni/engine"
import type { CniError, NetConf, Result } from "@tscni/spec"
import type { CniEnv } from "./env.ts"

/** One plugin invocation after the skeleton validated everything it could. */
export interface PluginRequest {
  readonly env: CniEnv
  /** stdin decoded; unknown keys preserved */
  readonly conf: NetConf
  /** stdin as received, for delegation (IPAM gets exactly what we got) */
  readonly raw: Record<string, unknown>
  /** conf.prevResult decoded in conf.cniVersion, when present */
  readonly prevResult: Result | undefined
}

/**
 * The attachment and the request as received, as a plugin's pipeline input carries them:
 * what it needs to find its own things again and to pass the request on to a delegate
 * (IPAM gets the same config, CNI_ARGS and CNI_PATH).
 */
export const attachmentOf = (request: PluginRequest) => ({
  containerId: request.env.containerId,
  netns: request.env.netns,
  ifname: request.env.ifname,
  args: request.env.argsRaw,
  cniPath: request.env.pathRaw,
  cniVersion: request.conf.cniVersion,
  rawConfig: request.raw
})

/** The errors a plugin may let through; the skeleton maps each to a CNI error code. */
export type PluginError = CniError | BackendError | CheckFailed | Pipeline.UndoIncomplete

/**
 * What a plugin implements. The skeleton does the rest: env and config validation,
 * version negotiation, result conversion to the config's version, error JSON and exit codes.
 * GC and STATUS default to "nothing to collect" / "ready".
 */
export interface PluginDefinition<R> {
  readonly name: string
  /**
   * The CNI_ARGS keys the plugin reads (`MAC`, `IP`, …). When given, any other key is code
   * 4 unless `IgnoreUnknown` is true, as the reference plugins' LoadArgs refuses them; a
   * plugin that reads no keys leaves it out and takes any (as the reference's do).
   */
  readonly cniArgs?: ReadonlyArray<string>
  readonly add: (request: PluginRequest) => Effect.Effect<Result, PluginError, R>
  readonly check: (request: PluginRequest) => Effect.Effect<void, PluginError, R>
  readonly del: (request: PluginRequest) => Effect.Effect<void, PluginError, R>
  readonly gc?: (request: PluginRequest) => Effect.Effect<void, PluginError, R>
  readonly status?: (request: PluginRequest) => Effect.Effect<void, PluginError, R>
}
