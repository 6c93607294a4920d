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

/**
 * The whole of loopback: bring the namespace's loopback interface up. DEL and CHECK find
 * it as ADD leaves a fresh namespace's loopback (down before, so DEL takes it down again):
 * up, and with the addresses bringing it up made the kernel add (127.0.0.1/8 stays after
 * down). DEL has nothing to do when the namespace is gone.
 */
export const loopbackPipeline = Pipeline.make<LoopbackInput, LoopbackInput>("loopback")
  .step("up", linkUp, (input) => ({ netns: input.netns, link: input.ifname }), (known, purpose) =>
    purpose === "del" && known.netns === ""
      ? Pipeline.skip
      : { netns: known.netns, link: known.ifname, wasUp: false, addedAddresses: ["127.0.0.1/8", "::1/128"] })
  .step("addresses", readAddresses, (input) => input, Pipeline.unlocated)
