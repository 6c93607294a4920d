import { Effect } from "effect"
import { Backend } from "@tscni/backend"
import { Pipeline } from "@tscni/engine"
import type { PluginDefinition, PluginRequest } from "@tscni/skel"
import { invalidEnvironment, type Result } from "@tscni/spec"
import { loopbackPipeline } from "./pipeline.ts"

const LOOPBACK_MAC = "00:00:00:00:00:00"

const inputOf = (request: PluginRequest) => ({ netns: request.env.netns, ifname: request.env.ifname })

/** The result the reference loopback gives: the interface and the addresses it carries. */
const describeLoopback = (netns: string, ifname: string, addresses: ReadonlyArray<string>): Result => ({
  cniVersion: "1.1.0",
  interfaces: [{ name: ifname, mac: LOOPBACK_MAC, sandbox: netns }],
  ips: addresses.map((address) => ({ address, interface: 0 }))
})

/** Refuses to treat anything but a loopback device as one (CNI_IFNAME names the wrong device). */
const requireLoopback = (netns: string, ifname: string) =>
  Effect.gen(function*() {
    const link = yield* (yield* Backend).getLink(netns, ifname)
    if (link.kind !== "loopback") {
      return yield* invalidEnvironment("CNI_IFNAME", `${ifname} in ${netns} is not a loopback device`)
    }
  })

/**
 * loopback: ADD brings the namespace's loopback up; DEL takes it down again (nothing to do
 * when the namespace is gone); CHECK verifies it is an up loopback device. As a chained
 * plugin it passes prevResult through unchanged.
 */
export const loopbackPlugin: PluginDefinition<Backend> = {
  name: "loopback",
  add: (request) =>
    Effect.gen(function*() {
      const input = inputOf(request)
      yield* requireLoopback(input.netns, input.ifname)
      const handles = yield* Pipeline.apply(loopbackPipeline, input)
      return request.prevResult ?? describeLoopback(input.netns, input.ifname, handles.addresses)
    }),
  check: (request) =>
    Effect.gen(function*() {
      const input = inputOf(request)
      yield* requireLoopback(input.netns, input.ifname)
      // What ADD promised: the link is up (whatever its state was before ADD).
      yield* Pipeline.runCheck(loopbackPipeline, input)
    }),
  del: (request) =>
    Effect.gen(function*() {
      // A fresh namespace's loopback is down: that is the state ADD found.
      yield* Pipeline.runDel(loopbackPipeline, inputOf(request))
    })
}
