import { Effect, Option, Schema } from "effect"
import { compensated, makeStep, Pipeline } from "@tscni/engine"
import { CniError, decodeFailure, decodeResult, encodeResult, ioFailure, Result, type Verb as CniVerb, verbSupported } from "@tscni/spec"
import { type ExecOutput, PluginExec } from "./PluginExec.ts"

/**
 * Everything a delegated IPAM invocation needs: which plugin, the network config to send
 * on stdin (the calling plugin's own config, `ipam` section included), and the request
 * the calling plugin itself received.
 */
export interface IpamAllocateInput {
  /** `ipam.type`: the binary's name in CNI_PATH */
  readonly pluginType: string
  /** the full network config JSON object */
  readonly config: Readonly<Record<string, unknown>>
  readonly cniVersion: string
  readonly containerId: string
  readonly netns: string
  readonly ifname: string
  /** CNI_ARGS, passed through unchanged */
  readonly args: string
  /** CNI_PATH, colon-separated */
  readonly cniPath: string
  /** what the delegate is, in messages (default "IPAM plugin"; the meta plugin's is its "delegate") */
  readonly role?: string
}

/** The request a plugin received, as far as its delegated IPAM invocation repeats it. */
export interface DelegatingRequest {
  readonly containerId: string
  readonly netns: string
  readonly ifname: string
  /** CNI_ARGS and CNI_PATH, passed to the IPAM plugin unchanged */
  readonly args: string
  readonly cniPath: string
  readonly cniVersion: string
  /** the network config as received, what the IPAM plugin gets on stdin */
  readonly rawConfig: Readonly<Record<string, unknown>>
}

/** The IPAM delegation of a request (same config, same env); DEL and CHECK repeat it. */
export const ipamRequest = (pluginType: string, request: DelegatingRequest): IpamAllocateInput => ({
  pluginType,
  config: request.rawConfig,
  cniVersion: request.cniVersion,
  containerId: request.containerId,
  netns: request.netns,
  ifname: request.ifname,
  args: request.args,
  cniPath: request.cniPath
})

/** The request (what DEL and CHECK must repeat) and the IPAM plugin's result. */
export const IpamAllocateHandle = Schema.Struct({
  pluginType: Schema.String,
  config: Schema.Record(Schema.String, Schema.Unknown),
  cniVersion: Schema.String,
  containerId: Schema.String,
  netns: Schema.String,
  ifname: Schema.String,
  args: Schema.String,
  cniPath: Schema.String,
  role: Schema.optionalKey(Schema.String),
  result: Result
})
export type IpamAllocateHandle = typeof IpamAllocateHandle.Type

type Request = Omit<IpamAllocateHandle, "result">
/** What a delegated plugin is asked to do (VERSION is not delegated). */
type Verb = Exclude<CniVerb, "VERSION">

const environment = (verb: Verb, request: Request): Record<string, string> => ({
  CNI_COMMAND: verb,
  CNI_CONTAINERID: request.containerId,
  CNI_NETNS: request.netns,
  CNI_IFNAME: request.ifname,
  CNI_ARGS: request.args,
  CNI_PATH: request.cniPath
})

const parseJson = (text: string): Option.Option<unknown> => {
  const trimmed = text.trim()
  if (trimmed === "") return Option.none()
  return Option.liftThrowable((): unknown => JSON.parse(trimmed))()
}

/** The CNI error JSON a plugin printed, as a CniError, if it printed one. */
export const pluginError = (output: ExecOutput): Option.Option<CniError> =>
  parseJson(output.stdout).pipe(
    Option.flatMap((json) => {
      if (typeof json !== "object" || json === null || !("code" in json) || !("msg" in json)) return Option.none()
      const { code, msg } = json
      if (typeof code !== "number" || typeof msg !== "string") return Option.none()
      const details = "details" in json && typeof json.details === "string" ? json.details : undefined
      return Option.some(details === undefined ? new CniError({ code, msg }) : new CniError({ code, msg, details }))
    })
  )

const excerpt = (output: ExecOutput): string =>
  [output.stderr.trim(), output.stdout.trim()].filter((text) => text !== "").join("\n").slice(0, 2000)

/** Runs one verb of the delegate; an error JSON or a non-zero exit becomes a CniError. */
const invoke = (verb: Verb, path: string, request: Request, config: unknown) =>
  Effect.gen(function*() {
    const exec = yield* PluginExec
    const output = yield* exec.exec({
      path,
      command: verb,
      env: environment(verb, request),
      stdin: JSON.stringify(config)
    })
    const error = pluginError(output)
    if (Option.isSome(error)) return yield* error.value
    if (output.exitCode !== 0) {
      return yield* ioFailure(`${request.role ?? "IPAM plugin"} ${request.pluginType} ${verb} exited with code ${output.exitCode}`, excerpt(output))
    }
    return output
  })

/** ADD, decoded; no rollback here (see apply). */
const add = (path: string, request: Request) =>
  Effect.gen(function*() {
    const output = yield* invoke("ADD", path, request, request.config)
    const json = parseJson(output.stdout)
    if (Option.isNone(json)) {
      return yield* decodeFailure(`${request.role ?? "IPAM plugin"} ${request.pluginType} ADD printed no JSON result`, excerpt(output))
    }
    return yield* decodeResult(json.value, request.cniVersion)
  })

/**
 * Delegates address allocation to an IPAM plugin, as the CNI spec prescribes: exec
 * `<ipam.type>` from CNI_PATH with the caller's request and config. If ADD fails after the
 * plugin ran, DEL is sent before the error is returned (the spec's rule for delegates), so
 * a half-made allocation never leaks. Undo is DEL (a plugin binary that is gone counts as
 * nothing to undo); check is CHECK, from spec 0.4.0 on, with the IPAM result as prevResult.
 */
export const ipamAllocate = makeStep<IpamAllocateInput, IpamAllocateHandle, CniError, PluginExec>({
  name: "ipamAllocate",
  handle: IpamAllocateHandle,
  apply: (input) =>
    Effect.gen(function*() {
      const exec = yield* PluginExec
      const request: Request = input
      const path = yield* exec.find(request.pluginType, request.cniPath)
      const result = yield* compensated("ipamAllocate", add(path, request), invoke("DEL", path, request, request.config))
      return { ...request, result }
    }),
  undo: (handle) =>
    Effect.gen(function*() {
      const exec = yield* PluginExec
      const path = yield* exec.lookup(handle.pluginType, handle.cniPath)
      if (Option.isNone(path)) {
        return yield* Effect.logDebug(`${handle.role ?? "IPAM plugin"} ${handle.pluginType} not found in CNI_PATH; nothing to release`)
      }
      yield* invoke("DEL", path.value, handle, handle.config)
    }),
  check: (handle) =>
    Effect.gen(function*() {
      if (!verbSupported("CHECK", handle.cniVersion)) return
      const exec = yield* PluginExec
      const path = yield* exec.find(handle.pluginType, handle.cniPath)
      const prevResult = yield* encodeResult(handle.result, handle.cniVersion)
      yield* invoke("CHECK", path, handle, { ...handle.config, prevResult })
    })
})

/**
 * The ipamAllocate step's `locate`: DEL releases the IP whatever prevResult says (the IPAM
 * plugin gets all of it; an empty result without one); CHECK asks the IPAM plugin about the
 * pod's part of prevResult, when there is one. Nothing without IPAM (`request` undefined).
 */
export const locateIpamAllocation = (
  request: IpamAllocateInput | undefined,
  purpose: Pipeline.Purpose,
  prevResult: Result | undefined,
  pod: Result | undefined
): IpamAllocateHandle | Pipeline.Skip => {
  if (request === undefined) return Pipeline.skip
  if (purpose === "del") return { ...request, result: prevResult ?? { cniVersion: request.cniVersion } }
  return pod === undefined ? Pipeline.skip : { ...request, result: pod }
}

/**
 * GC and STATUS of the delegate, as a plugin that delegates IPAM must pass them on
 * (spec 1.1.0). A delegate binary that is missing is reported: STATUS must not say ready.
 */
export const delegateIpam = (
  verb: "GC" | "STATUS",
  request: { readonly pluginType: string; readonly config: Readonly<Record<string, unknown>>; readonly cniPath: string; readonly args: string }
): Effect.Effect<void, CniError, PluginExec> =>
  Effect.gen(function*() {
    const exec = yield* PluginExec
    const path = yield* exec.find(request.pluginType, request.cniPath)
    const full: Request = { ...request, cniVersion: "1.1.0", containerId: "", netns: "", ifname: "" }
    yield* invoke(verb, path, full, request.config)
  })
