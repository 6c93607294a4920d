import { Layer } from "effect"
import { layer as linuxBackend } from "@tscni/backend-linux"
import { runPlugin } from "@tscni/skel"
import { PluginExec } from "@tscni/steps"
import { bridgePlugin } from "./plugin.ts"

/** The bridge process on the real kernel, delegating IPAM by exec. */
export const runBridge = (): Promise<void> => runPlugin(bridgePlugin, Layer.mergeAll(linuxBackend, PluginExec.layer))
