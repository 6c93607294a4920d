import { diskStoreLayer, hostLocalPlugin } from "@tscni/ipam"
import { bindPlugin, runBound } from "@tscni/skel"

/** host-local on the store on disk: what its process and the resident daemon run. */
export const hostLocalOnDisk = bindPlugin(hostLocalPlugin, diskStoreLayer)

/** The host-local process: the shared plugin on the store on disk. */
export const runHostLocal = (stdin?: string): Promise<void> => runBound(hostLocalOnDisk, stdin)
