import { appendFileSync } from "node:fs"
import { Layer, Logger, References } from "effect"
import type { LogLevel } from "effect/LogLevel"

const LEVELS: Record<string, LogLevel> = {
  trace: "Trace",
  debug: "Debug",
  info: "Info",
  warn: "Warn",
  warning: "Warn",
  error: "Error",
  none: "None"
}

/**
 * Logs never go to stdout (the runtime parses it as the result): they go to stderr, or to
 * `TSCNI_LOG_FILE` when set. `TSCNI_LOG=debug` shows every step's trace (name, phase,
 * duration, outcome); the default is `warn`.
 */
export const loggingLayer = (env: Record<string, string | undefined>): Layer.Layer<never> => {
  const level = LEVELS[(env.TSCNI_LOG ?? "warn").toLowerCase()] ?? "Warn"
  const file = env.TSCNI_LOG_FILE
  const write = file
    ? (line: string) => appendFileSync(file, line + "\n")
    : (line: string) => process.stderr.write(line + "\n")
  const logger = Logger.map(Logger.formatLogFmt, write)
  return Layer.mergeAll(
    Logger.layer([logger]),
    Layer.succeed(References.MinimumLogLevel)(level)
  )
}
