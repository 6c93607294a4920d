import { layer as linuxBackend } from "@tscni/backend-linux"
import { bindPlugin, runBound } from "@tscni/skel"
import { DEFAULT_OPTIONS } from "./config.ts"
import { makeTuningPlugin } from "./plugin.ts"

/**
 * tuning on the real kernel. `TSCNI_TUNING_ALLOWLIST` moves the allowlist (tests); a
 * runtime's environment is the administrator's, like the file itself (for the resident
 * daemon: the daemon's environment).
 */
export const tuningOnLinux = bindPlugin(
  makeTuningPlugin({
    ...DEFAULT_OPTIONS,
    allowlistPath: process.env.TSCNI_TUNING_ALLOWLIST ?? DEFAULT_OPTIONS.allowlistPath
  }),
  linuxBackend
)

/** The tuning process. */
export const runTuning = (stdin?: string): Promise<void> => runBound(tuningOnLinux, stdin)
