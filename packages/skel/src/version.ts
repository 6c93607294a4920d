import { versionInfo } from "@tscni/spec/versions"

/**
 * VERSION is called far more often than ADD (podman asks every plugin before each ADD and
 * DEL), so a plugin's entry point calls this before loading anything else. Answers and
 * returns true when the command is VERSION; the full skeleton handles everything else.
 */
export const answerVersionFast = (): boolean => {
  if (process.env.CNI_COMMAND !== "VERSION") return false
  // Bun.write, not process.stdout.write: creating the Node stream costs ~10 ms on a pipe,
  // more than the rest of the call (docs/bench/README.md). The pending write keeps the
  // process alive until it is done.
  // a reader gone away (EPIPE) fails the call, without a stack trace on stderr
  Bun.write(Bun.stdout, JSON.stringify(versionInfo()) + "\n").catch(() => {
    process.exitCode = 1
  })
  return true
}
