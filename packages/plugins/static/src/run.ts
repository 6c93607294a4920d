import { Layer } from "effect"
import { staticPlugin } from "@tscni/ipam"
import { bindPlugin, runBound } from "@tscni/skel"

/** static needs no service at all: what its process and the resident daemon run. */
export const staticAlone = bindPlugin(staticPlugin, Layer.empty)

/** The static process. */
export const runStatic = (stdin?: string): Promise<void> => runBound(staticAlone, stdin)
