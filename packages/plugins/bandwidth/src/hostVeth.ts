/**
 * Which host interface to shape. The rule, as the reference plugin's: the host interface is
 * the one in prevResult.interfaces that has no sandbox and is the veth peer of the pod
 * interface (CNI_IFNAME in CNI_NETNS). A bridge, our own ifb and any other host-side link
 * listed there are therefore never picked. No such interface is a code 7 error.
 */
import { Effect } from "effect"
import { Backend, type BackendError, HOST_NETNS, isMissingNetns, isNotFound, type LinkInfo } from "@tscni/backend"
import type { PluginRequest } from "@tscni/skel"
import { type CniError, hostInterfaceNames, invalidConfig } from "@tscni/spec"
import { ignoreNotFound } from "@tscni/steps"

/** prevResult's host-side interfaces (no sandbox), leaving out our own ifb. */
const hostSideNames = (request: PluginRequest, ifb: string): ReadonlyArray<string> =>
  hostInterfaceNames(request.prevResult).filter((name) => name !== ifb)

/** The prevResult interfaces that are veths in the host namespace. */
const hostVeths = (names: ReadonlyArray<string>) =>
  Effect.gen(function*() {
    const backend = yield* Backend
    const veths: Array<LinkInfo> = []
    for (const name of names) {
      const link = yield* ignoreNotFound(backend.getLink(HOST_NETNS, name))
      if (link?.kind === "veth") veths.push(link)
    }
    return veths
  })

/** The pod interface, when it exists (a missing namespace still fails: that is code 3). */
const podLink = (request: PluginRequest) =>
  (Backend.use((backend) => backend.getLink(request.env.netns, request.env.ifname))).pipe(
    Effect.catchIf((error) => isNotFound(error) && !isMissingNetns(error), () => Effect.succeed(undefined))
  )

/** A host link that is the other end of the pod's veth (each end names the other's index). */
const isPeerOf = (pod: LinkInfo) => (link: LinkInfo): boolean =>
  link.kind === "veth" && link.index === pod.peerIndex && (link.peerIndex === undefined || link.peerIndex === pod.index)

/** ADD and CHECK: the host veth by the rule above, or a code 7 error saying why there is none. */
export const findHostVeth = (request: PluginRequest, ifb: string): Effect.Effect<LinkInfo, CniError | BackendError, Backend> =>
  Effect.gen(function*() {
    const { netns, ifname } = request.env
    if (request.prevResult === undefined) {
      return yield* invalidConfig("prevResult", "bandwidth is a chained plugin: it needs the previous plugin's result to find the host interface")
    }
    const pod = yield* podLink(request)
    if (pod === undefined || pod.kind !== "veth" || pod.peerIndex === undefined) {
      return yield* invalidConfig("prevResult", `${ifname} in ${netns} is not a veth: there is no host interface to shape`)
    }
    const names = hostSideNames(request, ifb)
    const found = (yield* hostVeths(names)).find(isPeerOf(pod))
    if (found === undefined) {
      return yield* invalidConfig(
        "prevResult.interfaces",
        `no interface without sandbox (${names.length === 0 ? "none listed" : names.join(", ")}) is the host end of ${ifname}'s veth`
      )
    }
    return found
  })

/**
 * DEL, which must work with the namespace gone and without prevResult: the rule above when
 * the pod interface is still there (without prevResult, any host veth that is its peer);
 * otherwise the one host-side veth of prevResult if there is exactly one; otherwise none
 * (DEL then removes only the ifb).
 */
export const guessHostVeth = (request: PluginRequest, ifb: string): Effect.Effect<string | undefined, never, Backend> =>
  Effect.gen(function*() {
    const pod = request.env.netns === "" ? undefined : yield* podLink(request)
    if (pod?.kind === "veth" && pod.peerIndex !== undefined) {
      // without prevResult, the pod's peer by its index (one lookup, not every host link)
      const candidates = request.prevResult === undefined
        ? [yield* Backend.use((backend) => backend.getLinkByIndex(HOST_NETNS, pod.peerIndex!))]
        : yield* hostVeths(hostSideNames(request, ifb))
      return candidates.find(isPeerOf(pod))?.name
    }
    if (request.prevResult === undefined) return undefined
    const veths = yield* hostVeths(hostSideNames(request, ifb))
    return veths.length === 1 ? veths[0]?.name : undefined
  }).pipe(Effect.orElseSucceed(() => undefined))
