import { Effect, Layer, Option } from "effect"
import { ioFailure } from "@tscni/spec"
import {
  cniPathDirs,
  type ExecOutput,
  type ExecRequest,
  makePluginExec,
  PluginExec,
  type PluginExecShape,
  validatePluginType
} from "../PluginExec.ts"

/** A plugin binary simulated in memory: request in, process output out. */
export type FakePlugin = (request: ExecRequest) => ExecOutput

/** A PluginExec without processes, plus the record of every invocation. */
export interface FakePluginExec {
  readonly service: PluginExecShape
  readonly layer: Layer.Layer<PluginExec>
  readonly calls: () => ReadonlyArray<ExecRequest>
}

const basename = (path: string): string => path.slice(path.lastIndexOf("/") + 1)

/**
 * Unit tests of delegation run against plugins given as functions. A plugin is "installed"
 * in the first CNI_PATH directory; an empty CNI_PATH finds nothing.
 */
export const makeFakePluginExec = (plugins: Readonly<Record<string, FakePlugin>>): FakePluginExec => {
  const calls: Array<ExecRequest> = []
  const service = makePluginExec({
    lookup: (type, cniPath) =>
      validatePluginType(type).pipe(Effect.map(() => {
        const dir = cniPathDirs(cniPath)[0]
        return dir !== undefined && Object.hasOwn(plugins, type) ? Option.some(`${dir}/${type}`) : Option.none()
      })),
    exec: (request) =>
      Effect.suspend(() => {
        calls.push(request)
        const plugin = plugins[basename(request.path)]
        return plugin === undefined
          ? Effect.fail(ioFailure(`failed to run plugin ${request.path}: no such file`))
          : Effect.sync(() => plugin(request))
      })
  })
  return { service, layer: Layer.succeed(PluginExec)(service), calls: () => [...calls] }
}
