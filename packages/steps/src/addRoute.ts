import { Effect, Schema } from "effect"
import { Backend, type BackendError, Route } from "@tscni/backend"
import { ensure, makeStep } from "@tscni/engine"
import { sameCidrText, sameIpText } from "@tscni/ip"
import { ignoreNotFound } from "./internal.ts"

/** A route to add in a namespace (the pod's default route via the gateway, typically). */
export interface AddRouteInput {
  readonly netns: string
  readonly route: Route
}

/** The route as requested: exactly what undo deletes and check looks for. */
export const AddRouteHandle = Schema.Struct({ netns: Schema.String, route: Route })
export type AddRouteHandle = typeof AddRouteHandle.Type

const STEP = "addRoute"
const MAIN_TABLE = 254

/**
 * Whether `actual` (as the kernel lists it) is the route `wanted` asked for. Only what
 * the request names is compared; scope, protocol, source and the like are filled in by
 * the kernel and ignored.
 */
export const routeMatches = (wanted: Route, actual: Route): boolean =>
  sameCidrText(wanted.dst, actual.dst) &&
  (wanted.table ?? MAIN_TABLE) === (actual.table ?? MAIN_TABLE) &&
  (wanted.gateway === undefined || (actual.gateway !== undefined && sameIpText(wanted.gateway, actual.gateway))) &&
  (wanted.link === undefined || wanted.link === actual.link)

/** Adds one route; undo deletes exactly that route. */
export const addRoute = makeStep<AddRouteInput, AddRouteHandle, BackendError, Backend>({
  name: STEP,
  handle: AddRouteHandle,
  apply: (input) =>
    Effect.gen(function*() {
      const backend = yield* Backend
      // appended, as the reference plugins do: a pod on two networks has a default route on
      // each (IPv6 makes them multipath); only an identical route is refused
      yield* backend.addRoute(input.netns, input.route, { append: true })
      return { netns: input.netns, route: input.route }
    }),
  undo: (handle) =>
    Effect.gen(function*() {
      const backend = yield* Backend
      yield* ignoreNotFound(backend.deleteRoute(handle.netns, handle.route))
    }),
  check: (handle) =>
    Effect.gen(function*() {
      const backend = yield* Backend
      const routes = (yield* ignoreNotFound(backend.listRoutes(handle.netns))) ?? []
      yield* ensure(STEP, routes.some((route) => routeMatches(handle.route, route)), () =>
        `no route to ${handle.route.dst}${handle.route.gateway ? ` via ${handle.route.gateway}` : ""} in ${handle.netns}`)
    })
})
