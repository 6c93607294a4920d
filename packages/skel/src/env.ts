import { Effect } from "effect"
import { interfaceNameProblem } from "@tscni/backend"
import { statSync } from "node:fs"
import { type CniError, invalidEnvironment, isVerb, parseCniBool, splitCniArgs, type Verb, VERBS } from "@tscni/spec"

/**
 * Whether a namespace path names the process's own network namespace: a plugin told to
 * configure "the container" there would configure the host (its lo, its eth0).
 */
const isOwnNamespace = (path: string): boolean => {
  try {
    const pod = statSync(path)
    const own = statSync("/proc/self/ns/net")
    return pod.dev === own.dev && pod.ino === own.ino
  } catch {
    return false // not there (DEL of a gone pod) or not ours to read: other checks decide
  }
}

/** The request a runtime passes in CNI_* variables, validated for the verb at hand. */
export interface CniEnv {
  readonly command: Verb
  readonly containerId: string
  /** empty for DEL when the namespace is already gone, and for GC/STATUS */
  readonly netns: string
  readonly ifname: string
  /** CNI_ARGS as given, e.g. `IgnoreUnknown=1;K8S_POD_NAME=web` */
  readonly argsRaw: string
  /** CNI_ARGS split into pairs, in order */
  readonly args: ReadonlyArray<readonly [string, string]>
  /** CNI_ARGS `IgnoreUnknown` (a valid boolean, or absent: false) */
  readonly ignoreUnknown: boolean
  /** CNI_PATH as given (PluginExec splits it when a delegated plugin is looked up) */
  readonly pathRaw: string
}


// Same rules as the reference plugins (libcni's ValidateContainerID / ValidateInterfaceName).
const CONTAINER_ID = /^[A-Za-z0-9][A-Za-z0-9_.-]*$/

/** libcni's container ID rule: CNI_CONTAINERID here, --container-id in the runtime CLI. */
export const isValidContainerId = (id: string): boolean => CONTAINER_ID.test(id)

/** Which variables each verb needs (the spec's table); CNI_NETNS is optional for DEL. */
const required: Record<Verb, ReadonlyArray<"CNI_CONTAINERID" | "CNI_NETNS" | "CNI_IFNAME">> = {
  ADD: ["CNI_CONTAINERID", "CNI_NETNS", "CNI_IFNAME"],
  CHECK: ["CNI_CONTAINERID", "CNI_NETNS", "CNI_IFNAME"],
  DEL: ["CNI_CONTAINERID", "CNI_IFNAME"],
  GC: [],
  STATUS: [],
  VERSION: []
}

/** Parses `K=V;K2=V2`; an element that is not exactly KEY=VALUE is an error naming CNI_ARGS. */
export const parseCniArgs = (raw: string): Effect.Effect<ReadonlyArray<readonly [string, string]>, CniError> => {
  const split = splitCniArgs(raw)
  return "invalid" in split
    ? Effect.fail(invalidEnvironment("CNI_ARGS", `invalid element '${split.invalid}' (expected KEY=VALUE)`))
    : Effect.succeed(split.pairs)
}

/** `IgnoreUnknown`, which every plugin reads the same way: a boolean, or code 4 naming CNI_ARGS. */
const ignoreUnknownOf = (args: ReadonlyArray<readonly [string, string]>): Effect.Effect<boolean, CniError> => {
  let ignore = false
  for (const [key, value] of args) {
    if (key !== "IgnoreUnknown") continue
    const parsed = parseCniBool(value)
    if (parsed === undefined) return Effect.fail(invalidEnvironment("CNI_ARGS", `IgnoreUnknown: invalid boolean ${JSON.stringify(value)}`))
    ignore = parsed
  }
  return Effect.succeed(ignore)
}

/**
 * The CNI_ARGS keys a plugin does not read, unless `IgnoreUnknown` is true (Kubernetes
 * runtimes and podman always set it): code 4, as libcni's LoadArgs refuses them.
 */
export const refuseUnknownArgs = (env: CniEnv, known: ReadonlyArray<string>): Effect.Effect<void, CniError> => {
  if (env.ignoreUnknown) return Effect.void
  const unknown = env.args.filter(([key]) => key !== "IgnoreUnknown" && !known.includes(key)).map(([key, value]) => `${key}=${value}`)
  return unknown.length === 0
    ? Effect.void
    : Effect.fail(invalidEnvironment("CNI_ARGS", `unknown args ${unknown.join(";")} (set IgnoreUnknown=1 to ignore them)`))
}

const ifnameProblem = (name: string): string | undefined => {
  const problem = interfaceNameProblem(name)
  return problem === undefined ? undefined : `'${name}' ${problem}`
}

/** Reads and validates the CNI_* variables; every failure is code 4 naming the variable. */
export const readCniEnv = (env: Record<string, string | undefined>): Effect.Effect<CniEnv, CniError> =>
  Effect.gen(function*() {
    const command = env.CNI_COMMAND ?? ""
    if (command === "") return yield* invalidEnvironment("CNI_COMMAND", "missing")
    if (!isVerb(command)) {
      return yield* invalidEnvironment("CNI_COMMAND", `unknown command '${command}' (expected one of ${VERBS.join(", ")})`)
    }
    for (const name of required[command]) {
      if ((env[name] ?? "") === "") return yield* invalidEnvironment(name, "missing")
    }
    const containerId = env.CNI_CONTAINERID ?? ""
    if (containerId !== "" && !isValidContainerId(containerId)) {
      return yield* invalidEnvironment("CNI_CONTAINERID", `'${containerId}' has invalid characters`)
    }
    const ifname = env.CNI_IFNAME ?? ""
    const problem = ifname === "" ? undefined : ifnameProblem(ifname)
    if (problem !== undefined) return yield* invalidEnvironment("CNI_IFNAME", problem)
    const argsRaw = env.CNI_ARGS ?? ""
    const args = yield* parseCniArgs(argsRaw)
    const ignoreUnknown = yield* ignoreUnknownOf(args)
    const netns = env.CNI_NETNS ?? ""
    if (netns !== "" && (command === "ADD" || command === "CHECK" || command === "DEL") && isOwnNamespace(netns)) {
      return yield* invalidEnvironment("CNI_NETNS", `'${netns}' is the plugin's own network namespace (the host's), not a container's`)
    }
    return {
      command,
      containerId,
      netns,
      ifname,
      argsRaw,
      args,
      ignoreUnknown,
      pathRaw: env.CNI_PATH ?? ""
    }
  })
