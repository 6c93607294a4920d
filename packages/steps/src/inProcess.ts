import { realpathSync } from "node:fs"
import { basename } from "node:path"
import { Effect } from "effect"
import type { ExecOutput, ExecRequest, PluginExecShape } from "./PluginExec.ts"

/** A plugin tscni can run inside this process: same env and stdin in, same output out. */
export type InProcessPlugin = (request: ExecRequest) => Effect.Effect<ExecOutput>

const realpath = (path: string): string | undefined => {
  try {
    return realpathSync(path)
  } catch {
    return undefined
  }
}

/**
 * Runs a delegated plugin (IPAM) in-process when the binary CNI_PATH names is this very
 * executable — the multicall binary installed under the plugin's name — so its code is
 * already here and exec'ing it again would only cost a second process start. Any other
 * binary (another build, the reference plugins) is exec'd as the spec says.
 */
export const withInProcess = (
  exec: PluginExecShape,
  plugins: Readonly<Record<string, InProcessPlugin>>,
  self: string = process.execPath
): PluginExecShape => {
  const ownPath = realpath(self)
  const isSelf = (path: string): boolean => ownPath !== undefined && realpath(path) === ownPath
  return {
    ...exec,
    exec: (request) => {
      const name = basename(request.path)
      const plugin = Object.hasOwn(plugins, name) ? plugins[name] : undefined
      return plugin !== undefined && isSelf(request.path) ? plugin(request) : exec.exec(request)
    }
  }
}
