import { mkdirSync, readFileSync } from "node:fs"
import { dirname } from "node:path"
import { Effect, Schema } from "effect"
import { ensure, makeStep } from "@tscni/engine"
import { removeFileIfExists, replaceFile } from "@tscni/lock"
import { type CniError, ioFailure } from "@tscni/spec"

/** Where the attachment's rendered delegate goes, and the delegate. */
export interface SaveDelegateInput {
  readonly path: string
  readonly delegate: Readonly<Record<string, unknown>>
}

/** Just the file: undo removes it, check reads it back. */
export const SaveDelegateHandle = Schema.Struct({ path: Schema.String })
export type SaveDelegateHandle = typeof SaveDelegateHandle.Type

const STEP = "saveDelegate"
let temps = 0

const describe = (error: unknown): string => (error instanceof Error ? error.message : String(error))

/** The saved delegate of an attachment: undefined when there is none; a file that does not parse is an error. */
export const readSavedDelegate = (path: string): Effect.Effect<Record<string, unknown> | undefined, CniError> =>
  Effect.try({
    try: () => {
      let text: string
      try {
        text = readFileSync(path, "utf8")
      } catch (error) {
        if ((error as { code?: string }).code === "ENOENT") return undefined
        throw error
      }
      const parsed: unknown = JSON.parse(text)
      if (typeof parsed !== "object" || parsed === null || Array.isArray(parsed)) throw new Error("not a JSON object")
      return parsed as Record<string, unknown>
    },
    catch: (error) => ioFailure(`tscni-net: the saved delegate ${path} cannot be read: ${describe(error)}`)
  })

/**
 * Keeps the delegate exactly as rendered for this attachment (0600, written atomically),
 * before the delegate runs: DEL and CHECK use it, so they work after the node file changed
 * or with the agent gone. Undo removes it: a rolled-back ADD leaves nothing.
 */
export const saveDelegate = makeStep<SaveDelegateInput, SaveDelegateHandle, CniError>({
  name: STEP,
  handle: SaveDelegateHandle,
  apply: (input) =>
    Effect.try({
      try: () => {
        mkdirSync(dirname(input.path), { recursive: true, mode: 0o700 })
        // a counter too: in the agent, every call shares one PID
        replaceFile(input.path, `${input.path}.${process.pid}.${temps++}.tmp`, JSON.stringify(input.delegate))
        return { path: input.path }
      },
      catch: (error) => ioFailure(`tscni-net: saving the delegate to ${input.path}: ${describe(error)}`)
    }),
  undo: (handle) =>
    Effect.try({
      try: () => removeFileIfExists(handle.path),
      catch: (error) => ioFailure(`tscni-net: removing the saved delegate ${handle.path}: ${describe(error)}`)
    }),
  check: (handle) =>
    Effect.gen(function*() {
      const saved = yield* readSavedDelegate(handle.path)
      yield* ensure(STEP, saved !== undefined, () => `the saved delegate ${handle.path} is missing`)
    })
})
