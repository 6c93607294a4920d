import { diskStoreLayer, hostLocalPlugin } from "@tscni/ipam"
import { runPlugin } from "@tscni/skel"

/** The host-local process: the shared plugin on the store on disk. */
export const runHostLocal = (): Promise<void> => runPlugin(hostLocalPlugin, diskStoreLayer)
