import { appendFileSync, writeSync } from "node:fs"
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
 * Logs never go to stdout (the runtime parses it as the result): they go to stderr (or to
 * `sink`: the resident daemon sends them back to the caller's stderr), or to
 * `TSCNI_LOG_FILE` when set. `TSCNI_LOG=debug` shows every step's trace (name, phase,
 * duration, outcome); the default is `warn`.
 */
export const loggingLayer = (env: Record<string, string | undefined>, sink?: (line: string) => void): Layer.Layer<never> => {
  const level = LEVELS[(env.TSCNI_LOG ?? "warn").toLowerCase()] ?? "Warn"
  const file = env.TSCNI_LOG_FILE
  // a synchronous write: nothing is lost at process.exit, and no Node stream is created
  // (process.stderr costs ~10 ms to set up on a pipe)
  const toStderr = (line: string) => {
    try {
      const bytes = Buffer.from(line + "\n")
      // a pipe may take part of a long line: write the rest
      for (let written = 0; written < bytes.length;) written += writeSync(2, bytes, written)
    } catch {
      // stderr closed or full: the line is lost, the plugin goes on
    }
  }
  // A log line must never fail the plugin (a failed write inside a step would lose its
  // handle): when the file cannot be written, the line goes to stderr instead.
  const toConsole = sink ? (line: string) => sink(line + "\n") : toStderr
  const write = file
    ? (line: string) => {
      try {
        appendFileSync(file, line + "\n")
      } catch {
        toConsole(line)
      }
    }
    : toConsole
  const logger = Logger.map(Logger.formatLogFmt, write)
  return Layer.mergeAll(
    Logger.layer([logger]),
    Layer.succeed(References.MinimumLogLevel)(level)
  )
}
