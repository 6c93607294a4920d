/**
 * The failures `cni` reports: a CNI error of its own (bad flags, missing network, cache
 * I/O), or a plugin's CNI error together with the plugin and verb that produced it.
 */
import { Schema } from "effect"
import type { CniError } from "@tscni/spec"

/** A plugin of the chain answered with a CNI error (or died without one). */
export class PluginFailed extends Schema.TaggedError<PluginFailed>()("PluginFailed", {
  plugin: Schema.String,
  verb: Schema.String,
  code: Schema.Number,
  msg: Schema.String,
  details: Schema.optionalKey(Schema.String)
}) {}

/** Wraps a plugin's CniError with the plugin and verb it came from. */
export const pluginFailed = (plugin: string, verb: string, error: CniError): PluginFailed =>
  new PluginFailed({
    plugin,
    verb,
    code: error.code,
    msg: error.msg,
    ...(error.details === undefined ? {} : { details: error.details })
  })

/** Several failures that did not stop the work (GC goes on after each). */
export class Failures extends Schema.TaggedError<Failures>()("Failures", {
  summary: Schema.String,
  failures: Schema.Array(Schema.Struct({ what: Schema.String, code: Schema.Number, msg: Schema.String, details: Schema.optionalKey(Schema.String) }))
}) {}

/** Everything a `cni` command may fail with. */
export type CommandError = CniError | PluginFailed | Failures
