import { Context, Effect, Layer } from "effect"

/** The word in front of each output line. */
export type Status = "ok" | "failed" | "undone" | "undo failed" | "plan" | "note"

/** One line of the installer's output, one per step phase. */
export interface ReportLine {
  readonly status: Status
  readonly text: string
}

/** What a Reporter does: take one status line per step phase; the steps never print directly. */
export interface ReporterShape {
  readonly line: (status: Status, text: string) => Effect.Effect<void>
}

/** Renders a line as printed: the status padded to a column, then the text. */
export const formatLine = ({ status, text }: ReportLine): string => `${status.padEnd(11)} ${text}`

/** A closed stdout (`| head`) must never fail, and so roll back, an install. */
const writeQuietly = (text: string): void => {
  try {
    process.stdout.write(text)
  } catch {
    // the reader is gone; the install goes on
  }
}

/**
 * Where the step-by-step output goes: stdout for the CLI, a list in tests. A service so
 * the steps can report without knowing which.
 */
export class Reporter extends Context.Service<Reporter, ReporterShape>()("tscni/install/Reporter") {
  static readonly layer: Layer.Layer<Reporter> = Layer.succeed(Reporter)({
    line: (status, text) => Effect.sync(() => writeQuietly(formatLine({ status, text }) + "\n"))
  })

  /** Collects the lines into `into` instead of printing them. */
  static readonly collect = (into: Array<ReportLine>): Layer.Layer<Reporter> =>
    Layer.succeed(Reporter)({ line: (status, text) => Effect.sync(() => void into.push({ status, text })) })
}
