import { layer as linuxBackend } from "@tscni/backend-linux"
import { runPlugin } from "@tscni/skel"
import { DEFAULT_OPTIONS } from "./config.ts"
import { makeTuningPlugin } from "./plugin.ts"

/**
 * The tuning process on the real kernel. `TSCNI_TUNING_ALLOWLIST` moves the allowlist
 * (tests); a runtime's environment is the administrator's, like the file itself.
 */
export const runTuning = (): Promise<void> =>
  runPlugin(
    makeTuningPlugin({
      ...DEFAULT_OPTIONS,
      allowlistPath: process.env.TSCNI_TUNING_ALLOWLIST ?? DEFAULT_OPTIONS.allowlistPath
    }),
    linuxBackend
  )
