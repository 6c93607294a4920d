/**
 * The cluster side as the agent process starts it: the datastore (etcd or the Kubernetes
 * API) and the Linux backend wired in, run in the background until stopped. Loaded by
 * `tscni agent` only when a datastore is configured, so an agent that only serves calls
 * never loads a gRPC or HTTP client.
 */
import { Effect, Fiber, Layer } from "effect"
import { layer as linuxBackend } from "@tscni/backend-linux"
import { formatCidr } from "@tscni/ip"
import type { Datastore } from "./datastore.ts"
import { etcdDatastore, etcdDatastoreLayer } from "./etcdDatastore.ts"
import { etcdKvLayer } from "./etcdKv.ts"
import { inClusterConnection, kubeClient, kubeconfigConnection } from "./kube/client.ts"
import { kubeDatastoreLayer } from "./kubeDatastore.ts"
import { Kv } from "./kv.ts"
import { releaseSubnets } from "./leases.ts"
import { type NodeAgentOptions, type NodeStatus, runNodeAgent } from "./nodeAgent.ts"

/** Which datastore, and how to reach it. */
export type DatastoreArgs =
  | { readonly type: "etcd"; readonly endpoints: ReadonlyArray<string>; readonly prefix: string; readonly leaseTtlSeconds: number }
  | { readonly type: "kubernetes"; readonly kubeconfig: string | undefined; readonly clusterConfig: string; readonly serviceAccountDir: string | undefined }

export interface ClusterOptions extends NodeAgentOptions {
  readonly datastore: DatastoreArgs
}

/** The datastore's layer; a Kubernetes one without credentials is an error saying where they were looked for. */
const datastoreLayer = (args: DatastoreArgs): Layer.Layer<Datastore> => {
  if (args.type === "etcd") {
    return etcdDatastoreLayer(args.prefix, { leaseTtlSeconds: args.leaseTtlSeconds, endpoints: args.endpoints.join(",") }).pipe(
      Layer.provide(etcdKvLayer({ endpoints: args.endpoints }))
    )
  }
  const connection = args.kubeconfig !== undefined ? kubeconfigConnection(args.kubeconfig) : inClusterConnection(process.env, args.serviceAccountDir)
  if (connection === undefined) {
    throw new Error("no Kubernetes credentials: not in a pod (no KUBERNETES_SERVICE_HOST or service account token); give --kubeconfig")
  }
  return kubeDatastoreLayer(kubeClient(connection), { server: connection.server, clusterConfig: args.clusterConfig })
}

/** Starts the cluster side; `stop` interrupts it (nothing is released: see nodeAgent.ts). */
export const startCluster = (options: ClusterOptions, onStatus: (status: NodeStatus) => void): { readonly stop: () => Promise<void> } => {
  const fiber = Effect.runFork(runNodeAgent(options, onStatus).pipe(Effect.provide(Layer.merge(datastoreLayer(options.datastore), linuxBackend))))
  return { stop: () => Effect.runPromise(Fiber.interrupt(fiber)).then(() => undefined) }
}

/** `tscni agent leave` (etcd): deletes the node's leases (not its reservations); the subnets released. */
export const leaveCluster = (options: { readonly endpoints: ReadonlyArray<string>; readonly prefix: string; readonly node: string }) =>
  Effect.runPromise(
    Effect.gen(function*() {
      const kv = yield* Kv
      // the config as the agent reads it (a missing one is said so, not a JSON error)
      const config = yield* etcdDatastore(kv, options.prefix, { leaseTtlSeconds: 1, endpoints: options.endpoints.join(",") }).config
      return (yield* releaseSubnets(kv, options.prefix, config, options.node)).map(formatCidr)
    }).pipe(Effect.provide(etcdKvLayer({ endpoints: options.endpoints })))
  )

export type { NodeStatus }
