import { Effect, Schema } from "effect"
import { Backend } from "@tscni/backend"
import { derive, Pipeline } from "@tscni/engine"
import { linkUp } from "@tscni/steps"

/** Where the loopback interface lives: CNI_NETNS and CNI_IFNAME (normally `lo`). */
export interface LoopbackInput {
  readonly netns: string
  readonly ifname: string
}

/**
 * The addresses the result reports, read inside the pipeline: if reading them failed after
 * the link came up, the rollback takes it down again (nothing may fail after apply).
 */
const readAddresses = derive("readAddresses", Schema.Array(Schema.String), (input: LoopbackInput) =>
  Effect.map(
    Backend.use((backend) => backend.listAddresses(input.netns, input.ifname)),
    (addresses) => addresses.map((address) => address.cidr)
  ))

/** The whole of loopback: bring the namespace's loopback interface up. */
export const loopbackPipeline = Pipeline.make<LoopbackInput>("loopback")
  .step("up", linkUp, (input) => ({ netns: input.netns, link: input.ifname }))
  .step("addresses", readAddresses, (input) => input)
