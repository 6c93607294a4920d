import { Context } from "effect"

/**
 * The environment the runtime ran this call with, which a delegated plugin (IPAM) inherits
 * (its CNI_* replaced). In a plugin process that is process.env; the resident daemon runs
 * many callers' calls in one process and provides each call's own.
 */
export const CallerEnvironment = Context.Reference<Readonly<Record<string, string | undefined>>>("tscni/CallerEnvironment", {
  defaultValue: () => process.env
})
