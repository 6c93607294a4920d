import { Effect } from "effect"
import { interfaceNameProblem } from "@tscni/backend"
import { type CniError, invalidEnvironment, isVerb, splitCniArgs, type Verb, VERBS } from "@tscni/spec"

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

/** Parses `K=V;K2=V2`; an element without '=' or with an empty key is an error naming CNI_ARGS. */
export const parseCniArgs = (raw: string): Effect.Effect<ReadonlyArray<readonly [string, string]>, CniError> => {
  const split = splitCniArgs(raw)
  return "invalid" in split
    ? Effect.fail(invalidEnvironment("CNI_ARGS", `invalid element '${split.invalid}' (expected KEY=VALUE)`))
    : Effect.succeed(split.pairs)
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
    return {
      command,
      containerId,
      netns: env.CNI_NETNS ?? "",
      ifname,
      argsRaw,
      args,
      pathRaw: env.CNI_PATH ?? ""
    }
  })
