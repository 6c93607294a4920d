import { Pipeline } from "@tscni/engine"
import { linkUp } from "@tscni/steps"

/** Where the loopback interface lives: CNI_NETNS and CNI_IFNAME (normally `lo`). */
export interface LoopbackInput {
  readonly netns: string
  readonly ifname: string
}

/** The whole of loopback: bring the namespace's loopback interface up. */
export const loopbackPipeline = Pipeline.make<LoopbackInput>("loopback").step(
  "up",
  linkUp,
  (input) => ({ netns: input.netns, link: input.ifname })
)
