import { Effect, Schema } from "effect"
import { Backend, type BackendError } from "@tscni/backend"
import { ensure, makeStep } from "@tscni/engine"
import { ignoreNotFound } from "./internal.ts"

/** What createNetns needs: the namespace's name (it is bind-mounted under /var/run/netns). */
export interface CreateNetnsInput {
  readonly name: string
}

/** The path of the namespace created, exactly what CNI_NETNS will name. */
export const CreateNetnsHandle = Schema.Struct({ path: Schema.String })
export type CreateNetnsHandle = typeof CreateNetnsHandle.Type

/**
 * Creates a named network namespace. The runtime's job (apps/cni, tests, demos), not a
 * plugin's: a pod's sandbox must exist before any plugin runs.
 */
export const createNetns = makeStep<CreateNetnsInput, CreateNetnsHandle, BackendError, Backend>({
  name: "createNetns",
  handle: CreateNetnsHandle,
  apply: (input) =>
    Effect.gen(function*() {
      const backend = yield* Backend
      const path = yield* backend.createNetns(input.name)
      return { path }
    }),
  undo: (handle) =>
    Effect.gen(function*() {
      const backend = yield* Backend
      yield* ignoreNotFound(backend.deleteNetns(handle.path))
    }),
  check: (handle) =>
    Effect.gen(function*() {
      const backend = yield* Backend
      const exists = yield* backend.netnsExists(handle.path)
      yield* ensure("createNetns", exists, () => `network namespace ${handle.path} does not exist`)
    })
})
