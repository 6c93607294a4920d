import { type BackendError, HOST_NETNS, type NetnsPath } from "@tscni/backend"
import { Effect } from "effect"
import { destroyLink } from "./lifecycle.ts"
import { fail, type KernelState, linksInOrder, newNetns, requireNetns } from "./state.ts"

/** Where `ip netns add NAME` bind-mounts a namespace; createNetns returns paths under it. */
export const NETNS_DIR = "/var/run/netns"

/** Namespace operations of the mock: create, delete (destroying its links), exists. */
export const netnsOperations = (state: KernelState) => ({
  createNetns: (name: string): Effect.Effect<NetnsPath, BackendError> =>
    Effect.gen(function* () {
      if (name.length === 0 || name === "." || name === ".." || name.includes("/")) {
        return yield* fail("createNetns", "Invalid", `invalid namespace name ${JSON.stringify(name)}`, "EINVAL")
      }
      const path = `${NETNS_DIR}/${name}`
      if (state.namespaces.has(path)) {
        return yield* fail("createNetns", "AlreadyExists", `network namespace ${path} already exists`, "EEXIST")
      }
      state.namespaces.set(path, newNetns(path))
      return path
    }),

  deleteNetns: (path: NetnsPath): Effect.Effect<void, BackendError> =>
    Effect.gen(function* () {
      const ns = yield* requireNetns(state, "deleteNetns", path)
      if (path === HOST_NETNS) {
        return yield* fail("deleteNetns", "Invalid", "the host namespace cannot be deleted", "EINVAL")
      }
      // virtual links die with their namespace; a veth takes its peer in another namespace along
      for (const link of linksInOrder(ns)) if (ns.links.has(link.index)) destroyLink(state, ns, link)
      state.namespaces.delete(path)
    }),

  netnsExists: (path: NetnsPath): Effect.Effect<boolean, BackendError> =>
    Effect.succeed(state.namespaces.has(path))
})
