import { Layer } from "effect"
import { staticPlugin } from "@tscni/ipam"
import { runPlugin } from "@tscni/skel"

/** The static process: it needs no service at all. */
export const runStatic = (): Promise<void> => runPlugin(staticPlugin, Layer.empty)
