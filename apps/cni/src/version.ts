/**
 * Which spec version a list runs in. A list with only `cniVersion` runs in it. A list with
 * `cniVersions` (spec 1.1.0) runs in the highest of `cniVersion` ∪ `cniVersions` that
 * tscni and every plugin of the list support (each plugin is asked with VERSION, as libcni
 * 1.1 does); when a plugin cannot be asked, `cniVersion` is used as it stands.
 */
import { Effect } from "effect"
import { type CniError, compareVersions, ErrorCode, CniError as CniErrorClass, isSupportedVersion, negotiateVersion, type NetConfList } from "@tscni/spec"

/** What one plugin said to VERSION; `undefined` when it could not be asked. */
export type VersionAnswer = ReadonlyArray<string> | undefined

/** The versions a list offers, highest first, restricted to those tscni speaks. */
export const offeredVersions = (list: Pick<NetConfList, "cniVersion" | "cniVersions">): ReadonlyArray<string> =>
  [...new Set([list.cniVersion, ...(list.cniVersions ?? [])])]
    .filter(isSupportedVersion)
    .sort((a, b) => compareVersions(b, a))

const incompatible = (msg: string): CniError => new CniErrorClass({ code: ErrorCode.IncompatibleVersion, msg })

/**
 * The version to run in, given each plugin's answer (pure: the table in the tests).
 * Fails with code 1 when no offered version suits every plugin.
 */
export const chooseVersion = (
  list: Pick<NetConfList, "name" | "cniVersion" | "cniVersions">,
  answers: ReadonlyArray<VersionAnswer>
): Effect.Effect<string, CniError> => {
  const fixed = list.cniVersions === undefined || list.cniVersions.length === 0 || answers.some((a) => a === undefined)
  if (fixed) {
    return isSupportedVersion(list.cniVersion)
      ? Effect.succeed(list.cniVersion)
      : Effect.fail(incompatible(`network ${list.name}: cniVersion ${JSON.stringify(list.cniVersion)} is not one tscni speaks`))
  }
  const offered = offeredVersions(list)
  const chosen = negotiateVersion(offered.filter((v) => answers.every((a) => a !== undefined && a.includes(v))))
  return chosen === undefined
    ? Effect.fail(
      incompatible(
        `network ${list.name}: no version of [${offered.join(", ")}] is supported by every plugin (${
          answers.map((a) => `[${(a ?? []).join(", ")}]`).join(" ")
        })`
      )
    )
    : Effect.succeed(chosen)
}

/** Whether plugins must be asked at all (only lists with `cniVersions`). */
export const needsAsking = (list: Pick<NetConfList, "cniVersions">): boolean =>
  list.cniVersions !== undefined && list.cniVersions.length > 0

/**
 * Negotiates with the plugins through `ask` (VERSION of one plugin type; a failure means
 * "cannot be asked"). Each type is asked once.
 */
export const negotiateListVersion = <E, R>(
  list: Pick<NetConfList, "name" | "cniVersion" | "cniVersions"> & { readonly plugins: ReadonlyArray<{ readonly type: string }> },
  ask: (type: string) => Effect.Effect<ReadonlyArray<string>, E, R>
): Effect.Effect<string, CniError, R> =>
  Effect.gen(function*() {
    if (!needsAsking(list)) return yield* chooseVersion(list, [])
    const types = [...new Set(list.plugins.map((p) => p.type))]
    const answers: Array<VersionAnswer> = []
    for (const type of types) {
      answers.push(yield* ask(type).pipe(Effect.orElseSucceed((): VersionAnswer => undefined)))
    }
    return yield* chooseVersion(list, answers)
  })
