/**
 * Synchronous file primitives for tscni's state on disk (host-local's allocations, tuning's
 * saved values): a missing file or directory is an answer rather than an error, and a file
 * is written whole or not at all. Callers run them under their lock and map errors.
 */
import { closeSync, constants, openSync, readdirSync, readFileSync, renameSync, unlinkSync, writeSync } from "node:fs"

/** The errno name (`ENOENT`, …) of a failed fs call, if it has one. */
export const errnoCode = (error: unknown): string | undefined =>
  typeof error === "object" && error !== null && "code" in error && typeof error.code === "string"
    ? error.code
    : undefined

/** The file's text, or undefined when it does not exist. */
export const readFileIfExists = (path: string): string | undefined => {
  try {
    return readFileSync(path, "utf8")
  } catch (error) {
    if (errnoCode(error) === "ENOENT") return undefined
    throw error
  }
}

/** The names of the regular files in `dir` (none when it does not exist). */
export const listFiles = (dir: string): Array<string> => {
  try {
    return readdirSync(dir, { withFileTypes: true }).filter((entry) => entry.isFile()).map((entry) => entry.name)
  } catch (error) {
    if (errnoCode(error) === "ENOENT") return []
    throw error
  }
}

/** Removes a file; one already gone is fine. */
export const removeFileIfExists = (path: string): void => {
  try {
    unlinkSync(path)
  } catch (error) {
    if (errnoCode(error) !== "ENOENT") throw error
  }
}

/** Writes `content` to a new file (`flags` decide whether it must not exist; `mode` 0600 unless said), removing it if the write fails. */
export const writeNewFile = (path: string, content: string, flags: number, mode = 0o600): void => {
  const fd = openSync(path, flags, mode)
  try {
    writeSync(fd, content)
  } catch (error) {
    closeSync(fd)
    unlinkSync(path)
    throw error
  }
  closeSync(fd)
}

/** Replaces `path` atomically: writes `temp` (same directory, must not exist), then renames it over `path`. */
export const replaceFile = (path: string, temp: string, content: string, mode = 0o600): void => {
  writeNewFile(temp, content, constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL, mode)
  try {
    renameSync(temp, path)
  } catch (error) {
    unlinkSync(temp)
    throw error
  }
}
