/**
 * Schema decoding of one config field with errors that name the full field path
 * (`ipam.routes[1].gw: …`), plus the route list both IPAM plugins pass through.
 */
import { Effect, Schema } from "effect"
import { cidrFamily, ipFamily } from "@tscni/ip"
import { type CniError, describeSchemaError, invalidConfig, RouteEntry } from "@tscni/spec"

/** `field` + a path relative to it, as `describeSchemaError` renders paths. */
const joinPath = (field: string, path: string): string =>
  path === "" ? field : field === "" ? path : path.startsWith("[") ? `${field}${path}` : `${field}.${path}`

/** Decodes `value` (found at `field`) with `schema`; a mismatch is code 7 naming the exact field. */
export const decodeField = <S extends Schema.Top>(
  schema: S,
  value: unknown,
  field: string
): Effect.Effect<S["Type"], CniError, S["DecodingServices"]> =>
  Schema.decodeUnknownEffect(schema)(value).pipe(
    Effect.mapError((error) => {
      const { path, message } = describeSchemaError(error)
      return invalidConfig(joinPath(field, path), message)
    })
  )

const Routes = Schema.Array(RouteEntry)

/** Config routes (the result's route shape); a gateway must be of the destination's family. */
export const decodeRoutes = (value: unknown, field: string): Effect.Effect<ReadonlyArray<Route>, CniError> =>
  Effect.gen(function*() {
    if (value === undefined || value === null) return []
    const routes = yield* decodeField(Routes, value, field)
    for (const [index, route] of routes.entries()) {
      if (route.gw !== undefined && ipFamily(route.gw) !== cidrFamily(route.dst)) {
        return yield* invalidConfig(`${field}[${index}].gw`, `${route.gw} is not of the same family as dst ${route.dst}`)
      }
    }
    return routes
  })

/** One route as configured and as returned in the result. */
export type Route = typeof RouteEntry.Type
