import { versionInfo } from "@tscni/spec/versions"

/**
 * VERSION is called far more often than ADD (podman asks every plugin before each ADD and
 * DEL), so a plugin's entry point calls this before loading anything else. Answers and
 * returns true when the command is VERSION; the full skeleton handles everything else.
 */
export const answerVersionFast = (): boolean => {
  if (process.env.CNI_COMMAND !== "VERSION") return false
  process.stdout.write(JSON.stringify(versionInfo()) + "\n")
  return true
}
