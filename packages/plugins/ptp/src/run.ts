import { Layer } from "effect"
import { layer as linuxBackend } from "@tscni/backend-linux"
import { pluginExecWithOwnIpam } from "@tscni/ipam/ownIpam"
import { bindPlugin, runBound } from "@tscni/skel"
import { ptpPlugin } from "./plugin.ts"

/** ptp on the real kernel; IPAM exec'd from CNI_PATH, or in-process when that is this multicall binary. */
export const ptpOnLinux = bindPlugin(ptpPlugin, Layer.mergeAll(linuxBackend, pluginExecWithOwnIpam))

/** The ptp process. */
export const runPtp = (stdin?: string): Promise<void> => runBound(ptpOnLinux, stdin)
