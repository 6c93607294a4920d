import { Effect, Schema } from "effect"
import { Backend, type BackendError, isNotFound, Route } from "@tscni/backend"
import { ensure, makeStep } from "@tscni/engine"
import { sameCidrText } from "@tscni/ip"
import { ignoreNotFound } from "@tscni/steps"

/** The route the kernel added for an address (`proto kernel`), as the pod's interface has it. */
export interface DropConnectedRouteInput {
  readonly netns: string
  readonly route: Route
}

/** The route, and whether this step removed it (false: the kernel had not added one). */
export const DropConnectedRouteHandle = Schema.Struct({ netns: Schema.String, route: Route, dropped: Schema.Boolean })
export type DropConnectedRouteHandle = typeof DropConnectedRouteHandle.Type

const STEP = "dropConnectedRoute"

/** A route straight onto the link to that network (no gateway): what the kernel adds with an address. */
const isConnected = (wanted: Route, actual: Route): boolean =>
  actual.gateway === undefined &&
  actual.link === wanted.link &&
  (actual.table ?? 254) === (wanted.table ?? 254) &&
  sameCidrText(actual.dst, wanted.dst)

/**
 * Removes the route the kernel added with an address, so the pod reaches the rest of its
 * network through the gateway, not on the link (ptp: the host routes, nothing answers ARP
 * for another pod on the pod's veth). Undo adds it back; the kernel listed it as `proto
 * kernel`, and it comes back as a route of ours (`boot`), otherwise the same. Only a
 * rollback undoes this step, and the veth the route is on goes right after; DEL leaves it
 * to the veth. Check: no such route is on the link.
 */
export const dropConnectedRoute = makeStep<DropConnectedRouteInput, DropConnectedRouteHandle, BackendError, Backend>({
  name: STEP,
  handle: DropConnectedRouteHandle,
  apply: (input) =>
    Effect.gen(function*() {
      const backend = yield* Backend
      // none there (nothing the kernel would add): nothing to drop
      const dropped = yield* backend.deleteRoute(input.netns, input.route).pipe(
        Effect.as(true),
        Effect.catchIf(isNotFound, () => Effect.succeed(false))
      )
      return { netns: input.netns, route: input.route, dropped }
    }),
  undo: (handle) =>
    Effect.gen(function*() {
      if (!handle.dropped) return
      const backend = yield* Backend
      // the link gone (NotFound), or the kernel put it back itself (AlreadyExists): done
      yield* ignoreNotFound(backend.addRoute(handle.netns, handle.route, { append: true })).pipe(
        Effect.catchIf((error) => error.reason === "AlreadyExists", () => Effect.void)
      )
    }),
  check: (handle) =>
    Effect.gen(function*() {
      const backend = yield* Backend
      const routes = (yield* ignoreNotFound(backend.listRoutes(handle.netns))) ?? []
      yield* ensure(STEP, !routes.some((route) => isConnected(handle.route, route)), () =>
        `${handle.route.dst} is routed straight onto ${handle.route.link} in ${handle.netns}, not through the gateway`)
    })
})
