/**
 * The Kubernetes datastore: the node's subnets are the ones kube-controller-manager
 * assigned (`spec.podCIDRs`, with `--allocate-node-cidrs`), peers are the other Node
 * objects, and each agent publishes what its peers need in its Node's annotations (as
 * flannel does with its own): `tscni.io/public-ip`, `tscni.io/backend-type`,
 * `tscni.io/vtep-mac`. A node without annotations is reached by host-gw at its InternalIP.
 * The cluster config comes from a file (`--cluster-config`, e.g. a ConfigMap mounted into
 * the DaemonSet pod), in the same JSON as etcd's `<prefix>/config`.
 */
import { readFileSync } from "node:fs"
import { Deferred, Effect, Layer, Schema } from "effect"
import { contains, formatCidr, parseCidr } from "@tscni/ip"
import { type ClusterConfig, decodeClusterConfig } from "./config.ts"
import { Datastore, type DatastoreShape } from "./datastore.ts"
import type { KubeClient, KubeNode } from "./kube/client.ts"
import type { HeldSubnet, SubnetClaim } from "./leases.ts"

export const ANNOTATION = {
  publicIp: "tscni.io/public-ip",
  publicIpv6: "tscni.io/public-ipv6",
  backendType: "tscni.io/backend-type",
  vtepMac: "tscni.io/vtep-mac"
} as const

/** Nothing to hold yet: said on /readyz and in the log, then retried. */
class NotYet extends Schema.TaggedError<NotYet>()("NotYet", { message: Schema.String }) {}

/** A Node's subnets as claims, with what its agent published (or its InternalIP, host-gw). */
const claimsOf = (config: ClusterConfig, node: KubeNode): ReadonlyArray<SubnetClaim> => {
  const publicIp = node.annotations[ANNOTATION.publicIp] ?? node.internalIPs.find((ip) => !ip.includes(":"))
  const publicIpv6 = node.annotations[ANNOTATION.publicIpv6] ?? node.internalIPs.find((ip) => ip.includes(":"))
  const vtepMac = node.annotations[ANNOTATION.vtepMac]
  const backend = node.annotations[ANNOTATION.backendType] === "vxlan" && vtepMac !== undefined ? { type: "vxlan" as const, vtepMac } : { type: "host-gw" as const }
  return node.podCIDRs.flatMap((text) => {
    const subnet = parseCidr(text)
    if (subnet === undefined || !config.networks.some((net) => net.family === subnet.ip.family && contains(net.network, subnet.ip))) return []
    return [{
      subnet,
      record: { node: node.name, ...(publicIp === undefined ? {} : { publicIp }), ...(publicIpv6 === undefined ? {} : { publicIpv6 }), backend },
      reserved: true,
      key: node.name,
      modRevision: 0n
    }]
  })
}

/** The node's assigned subnets, one per family of the config; NotYet while one is missing. */
const assigned = (config: ClusterConfig, node: KubeNode) =>
  Effect.gen(function*() {
    if (node.podCIDRs.length === 0) {
      return yield* new NotYet({ message: `node ${node.name} has no spec.podCIDRs yet (kube-controller-manager --allocate-node-cidrs assigns them)` })
    }
    const held: Array<HeldSubnet> = []
    for (const net of config.networks) {
      const subnet = node.podCIDRs.map(parseCidr).find((cidr) => cidr !== undefined && cidr.ip.family === net.family && contains(net.network, cidr.ip))
      if (subnet === undefined) {
        return yield* new NotYet({ message: `node ${node.name}'s podCIDRs (${node.podCIDRs.join(", ")}) hold none in ${formatCidr(net.network)}` })
      }
      held.push({ family: net.family, subnet, outcome: "assigned" })
    }
    return held
  })

/**
 * Runs `onEvent` for every Node change from a fresh list on, for ever: a watch the server
 * ends is resumed from the last resourceVersion seen (events and bookmarks move it); one
 * that is too old (410) starts over from a list, and `onRelist` runs.
 */
const followNodes = (client: KubeClient, onEvent: (node: KubeNode | undefined, deleted: boolean) => Effect.Effect<void>, onRelist: Effect.Effect<void>) =>
  Effect.gen(function*() {
    for (;;) {
      const list = yield* client.listNodes
      let resourceVersion = list.resourceVersion
      for (const node of list.nodes) yield* onEvent(node, false)
      yield* onRelist
      for (;;) {
        const watched = yield* client.watchNodes(resourceVersion, (event) =>
          Effect.suspend(() => {
            if (event.type === "BOOKMARK") {
              resourceVersion = event.resourceVersion
              return Effect.void
            }
            resourceVersion = event.node.resourceVersion || resourceVersion
            return onEvent(event.node, event.type === "DELETED")
          })).pipe(Effect.result)
        if (watched._tag === "Success") continue
        if (watched.failure.gone) break
        return yield* watched.failure
      }
    }
  })

export const kubeDatastore = (client: KubeClient, options: { readonly server: string; readonly clusterConfig: string }): DatastoreShape => ({
  describe: `kubernetes ${options.server}`,
  config: Effect.gen(function*() {
    const text = yield* Effect.try({
      try: () => readFileSync(options.clusterConfig, "utf8"),
      catch: (error) => new NotYet({ message: `cluster config ${options.clusterConfig}: ${error instanceof Error ? error.message : String(error)}` })
    })
    return yield* decodeClusterConfig(text)
  }),
  hold: (config, identity) =>
    Effect.gen(function*() {
      const node = yield* client.getNode(identity.node).pipe(
        Effect.catchIf((error) => error.status === 404, () => Effect.fail(new NotYet({ message: `node ${identity.node} is not registered with the API server` })))
      )
      const held = yield* assigned(config, node)
      yield* client.annotateNode(identity.node, {
        [ANNOTATION.publicIp]: identity.publicIp,
        [ANNOTATION.publicIpv6]: identity.publicIpv6 ?? null,
        [ANNOTATION.backendType]: identity.backend.type,
        [ANNOTATION.vtepMac]: identity.backend.vtepMac ?? null
      })
      const wanted = held.map((h) => formatCidr(h.subnet)).sort().join()
      const gone = yield* Deferred.make<string>()
      const watch = followNodes(client, (changed, deleted) => {
        if (changed?.name !== identity.node) return Effect.void
        if (deleted) return Deferred.succeed(gone, `node ${identity.node} was deleted from the API server`).pipe(Effect.asVoid)
        const now = changed.podCIDRs.map((text) => parseCidr(text)).flatMap((cidr) => (cidr === undefined ? [] : [formatCidr(cidr)]))
          .filter((cidr) => held.some((h) => parseCidr(cidr)?.ip.family === h.family)).sort().join()
        return now === wanted ? Effect.void : Deferred.succeed(gone, `node ${identity.node}'s podCIDRs changed (${changed.podCIDRs.join(", ")})`).pipe(Effect.asVoid)
      }, Effect.void)
      return { subnets: held, ended: Effect.raceFirst(Deferred.await(gone), watch) }
    }),
  claims: (config) => client.listNodes.pipe(Effect.map((list) => list.nodes.flatMap((node) => claimsOf(config, node)))),
  changes: (onChange) => followNodes(client, () => onChange, onChange)
})

/** The Kubernetes datastore as a layer. */
export const kubeDatastoreLayer = (client: KubeClient, options: { readonly server: string; readonly clusterConfig: string }): Layer.Layer<Datastore> =>
  Layer.succeed(Datastore)(kubeDatastore(client, options))
