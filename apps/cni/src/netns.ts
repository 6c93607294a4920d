/**
 * Network namespaces, the runtime's part of a pod sandbox: `cni netns create|delete|list`
 * through the createNetns step (apply creates, undo deletes) on the Backend, and the
 * naming rules shared with the attachment commands (a bare NAME is /var/run/netns/NAME).
 */
import { readdirSync } from "node:fs"
import { basename, join } from "node:path"
import { Effect } from "effect"
import { Backend, type BackendError, interfaceNameProblem } from "@tscni/backend"
import { type CniError, ErrorCode, CniError as CniErrorClass, invalidConfig, ioFailure } from "@tscni/spec"
import { isValidContainerId } from "@tscni/skel/env"
import { createNetns } from "@tscni/steps"

/** Where named namespaces live (as for `ip netns`). */
export const NETNS_DIR = "/var/run/netns"

/** A NETNS argument as a path: a bare name lives in /var/run/netns. */
export const netnsPath = (arg: string): string => (arg.includes("/") ? arg : join(NETNS_DIR, arg))

/** The default container ID for a netns argument: its base name (a netns name is unique enough). */
export const containerIdFor = (netns: string): string => basename(netns)

/** libcni's container ID rule (utils.ValidateContainerID). */
export const validateContainerId = (id: string): Effect.Effect<string, CniError> =>
  isValidContainerId(id)
    ? Effect.succeed(id)
    : Effect.fail(invalidConfig("--container-id", `invalid container ID ${JSON.stringify(id)} (alphanumeric first, then [A-Za-z0-9_.-])`))

/** libcni's interface name rule (utils.ValidateInterfaceName). */
export const validateIfname = (name: string): Effect.Effect<string, CniError> =>
  interfaceNameProblem(name) === undefined
    ? Effect.succeed(name)
    : Effect.fail(invalidConfig("--ifname", `invalid interface name ${JSON.stringify(name)}: ${interfaceNameProblem(name)}`))

const validateName = (name: string): Effect.Effect<string, CniError> =>
  name !== "" && name !== "." && name !== ".." && !name.includes("/") && !name.includes("\0")
    ? Effect.succeed(name)
    : Effect.fail(invalidConfig("NAME", `not a namespace name: ${JSON.stringify(name)}`))

const fromBackend = (what: string) => (error: BackendError): CniError =>
  new CniErrorClass({
    code: error.reason === "NotFound" ? ErrorCode.UnknownContainer : ErrorCode.IoFailure,
    msg: `${what}: ${error.message}`,
    ...(error.errno === undefined ? {} : { details: error.errno })
  })

/** Creates /var/run/netns/NAME (the createNetns step's apply); its path. */
export const createNamedNetns = (name: string): Effect.Effect<string, CniError, Backend> =>
  validateName(name).pipe(
    Effect.flatMap((valid) => createNetns.apply({ name: valid })),
    Effect.map((handle) => handle.path),
    Effect.mapError((error) => (error._tag === "CniError" ? error : fromBackend(`cannot create network namespace ${name}`)(error)))
  )

/** Deletes a namespace (the step's undo); one that is not there is code 3. */
export const deleteNamedNetns = (arg: string): Effect.Effect<string, CniError, Backend> =>
  Effect.gen(function*() {
    const path = netnsPath(arg)
    const backend = yield* Backend
    const exists = yield* backend.netnsExists(path).pipe(Effect.mapError(fromBackend(`cannot inspect ${path}`)))
    if (!exists) {
      return yield* new CniErrorClass({ code: ErrorCode.UnknownContainer, msg: `no network namespace ${path}` })
    }
    yield* createNetns.undo({ path }).pipe(Effect.mapError(fromBackend(`cannot delete network namespace ${path}`)))
    return path
  })

/** The entries of /var/run/netns that are network namespaces, by name. */
export const listNamedNetns = (
  isNetns: (path: string) => boolean,
  dir: string = NETNS_DIR
): Effect.Effect<ReadonlyArray<string>, CniError> =>
  Effect.try({
    try: () => readdirSync(dir).sort(),
    catch: (e) => e
  }).pipe(
    Effect.catch((e) =>
      typeof e === "object" && e !== null && "code" in e && e.code === "ENOENT"
        ? Effect.succeed<Array<string>>([])
        : Effect.fail(ioFailure(`cannot list ${dir}`, e instanceof Error ? e.message : String(e)))
    ),
    Effect.map((names) => names.filter((name) => isNetns(join(dir, name))))
  )
