/**
 * Proving an installed plugin runs: exec it as a runtime would for VERSION and read its
 * answer. A binary that does not answer fails the install, which then rolls back.
 */
import { Effect, Schema } from "effect"
import { makeStep } from "@tscni/engine"
import { PluginExec } from "@tscni/steps/PluginExec"
import { InstallError } from "./errors.ts"

/** The spec version every installed plugin must support. */
export const REQUIRED_VERSION = "1.0.0"

/** How long a plugin may take to answer VERSION. */
export const VERSION_TIMEOUT_MS = 10_000

const VersionAnswer = Schema.Struct({
  cniVersion: Schema.String,
  supportedVersions: Schema.Array(Schema.String)
})

/** What verifyPlugin saw. */
export const Verified = Schema.Struct({
  name: Schema.String,
  path: Schema.String,
  supportedVersions: Schema.Array(Schema.String)
})
export type Verified = typeof Verified.Type

const failed = (path: string, message: string): InstallError =>
  new InstallError({ operation: "verify", path, reason: "VerifyFailed", message })

const firstLine = (text: string): string => text.trim().split("\n")[0]?.slice(0, 300) ?? ""

const parseAnswer = (path: string, stdout: string) =>
  Effect.try({ try: (): unknown => JSON.parse(stdout), catch: () => failed(path, `VERSION printed no JSON: ${JSON.stringify(firstLine(stdout))}`) }).pipe(
    Effect.flatMap((json) =>
      Schema.decodeUnknownEffect(VersionAnswer)(json).pipe(
        Effect.mapError(() => failed(path, `VERSION answer has no supportedVersions: ${firstLine(stdout)}`))
      )
    )
  )

/**
 * Runs `path` with CNI_COMMAND=VERSION and `{"cniVersion":"1.0.0"}` on stdin; succeeds
 * with the supported versions when it exits 0 and lists 1.0.0.
 */
export const probeVersion = (path: string): Effect.Effect<ReadonlyArray<string>, InstallError, PluginExec> =>
  Effect.gen(function*() {
    const exec = yield* PluginExec
    const output = yield* exec.exec({
      path,
      command: "VERSION",
      env: { CNI_COMMAND: "VERSION" },
      stdin: JSON.stringify({ cniVersion: REQUIRED_VERSION })
    }).pipe(
      Effect.mapError((error) => failed(path, error.details === undefined ? error.msg : `${error.msg}: ${error.details}`)),
      Effect.timeoutOrElse({
        duration: VERSION_TIMEOUT_MS,
        orElse: () => Effect.fail(failed(path, `no answer to VERSION within ${VERSION_TIMEOUT_MS / 1000}s`))
      })
    )
    if (output.exitCode !== 0) {
      const said = firstLine(output.stdout) || firstLine(output.stderr)
      return yield* failed(path, `VERSION exited with ${output.exitCode}${said === "" ? "" : `: ${said}`}`)
    }
    const answer = yield* parseAnswer(path, output.stdout)
    if (!answer.supportedVersions.includes(REQUIRED_VERSION)) {
      return yield* failed(path, `does not support CNI ${REQUIRED_VERSION} (supports ${answer.supportedVersions.join(", ")})`)
    }
    return answer.supportedVersions
  })

/**
 * Verifies one installed plugin. It changes nothing, so undo does nothing; it is a step
 * so a failure rolls back everything installed before it.
 */
export const verifyPlugin = makeStep({
  name: "verifyPlugin",
  handle: Verified,
  apply: (input: { readonly name: string; readonly path: string }) =>
    probeVersion(input.path).pipe(Effect.map((supportedVersions) => ({ ...input, supportedVersions }))),
  undo: () => Effect.void,
  check: (verified) => Effect.asVoid(probeVersion(verified.path))
})
