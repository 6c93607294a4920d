/**
 * The cluster side as the agent process starts it: the datastore (etcd or the Kubernetes
 * API) and the Linux backend wired in, run in the background until stopped. Loaded by
 * `tscni agent` only when a datastore is configured, so an agent that only serves calls
 * never loads a gRPC or HTTP client.
 */
import { Effect, Fiber, Layer, ManagedRuntime } from "effect"
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
import { makePolicyAgent, type PolicyStatus } from "./policyAgent.ts"
import { etcdPolicySource, kubePolicySource, PolicySourceService } from "./policySource.ts"

/** Which datastore, and how to reach it. */
export type DatastoreArgs =
  | { readonly type: "etcd"; readonly endpoints: ReadonlyArray<string>; readonly prefix: string; readonly leaseTtlSeconds: number }
  | { readonly type: "kubernetes"; readonly kubeconfig: string | undefined; readonly clusterConfig: string; readonly serviceAccountDir: string | undefined }

export interface ClusterOptions extends NodeAgentOptions {
  readonly datastore: DatastoreArgs
}

/** The Kubernetes client the flags name; no credentials is an error saying where they were looked for. */
const kubeClientOf = (args: DatastoreArgs & { readonly type: "kubernetes" }) => {
  const connection = args.kubeconfig !== undefined ? kubeconfigConnection(args.kubeconfig) : inClusterConnection(process.env, args.serviceAccountDir)
  if (connection === undefined) {
    throw new Error("no Kubernetes credentials: not in a pod (no KUBERNETES_SERVICE_HOST or service account token); give --kubeconfig")
  }
  return { client: kubeClient(connection), server: connection.server }
}

/** The datastore and the policy enforcement's source, over one client. */
const datastoreLayer = (args: DatastoreArgs): Layer.Layer<Datastore | PolicySourceService> => {
  if (args.type === "etcd") {
    return Layer.merge(
      etcdDatastoreLayer(args.prefix, { leaseTtlSeconds: args.leaseTtlSeconds, endpoints: args.endpoints.join(",") }),
      Layer.effect(PolicySourceService)(Effect.gen(function*() {
        return etcdPolicySource(yield* Kv, args.prefix)
      }))
    ).pipe(Layer.provide(etcdKvLayer({ endpoints: args.endpoints })))
  }
  const { client, server } = kubeClientOf(args)
  return Layer.merge(kubeDatastoreLayer(client, { server, clusterConfig: args.clusterConfig }), Layer.effect(PolicySourceService)(Effect.succeed(kubePolicySource(client))))
}

/** The running cluster side. */
export interface RunningCluster {
  /** interrupts it (nothing is released: see nodeAgent.ts) */
  readonly stop: () => Promise<void>
  /** the policy enforcement, told of the pods whose calls the agent served */
  readonly policy: {
    readonly attached: (pod: { readonly namespace: string; readonly name: string; readonly containerID: string; readonly ips: ReadonlyArray<string> }) => Promise<void>
    readonly detached: (containerID: string) => Promise<void>
  }
}

/** A failed policy loop (the datastore unreachable, the watch broken) starts again after this. */
const POLICY_RETRY = "1 second"

/** Starts the cluster side. */
export const startCluster = async (
  options: ClusterOptions,
  onStatus: (status: NodeStatus) => void,
  onPolicy: (status: PolicyStatus) => void = () => {}
): Promise<RunningCluster> => {
  const runtime = ManagedRuntime.make(Layer.merge(datastoreLayer(options.datastore), linuxBackend))
  const policy = await runtime.runPromise(Effect.gen(function*() {
    return yield* makePolicyAgent(yield* PolicySourceService, options.node, onPolicy)
  }))
  const policyLoop = policy.run.pipe(
    Effect.catch((error) => Effect.sync(() => process.stderr.write(`tscni agent: policy: ${error instanceof Error ? error.message : String(error)}; again in ${POLICY_RETRY}\n`))),
    Effect.andThen(Effect.sleep(POLICY_RETRY)),
    Effect.forever
  )
  const fibers = [runtime.runFork(runNodeAgent(options, onStatus)), runtime.runFork(policyLoop)]
  return {
    stop: async () => {
      await Promise.all(fibers.map((fiber) => Effect.runPromise(Fiber.interrupt(fiber))))
      await runtime.dispose()
    },
    policy: {
      attached: (pod) => runtime.runPromise(policy.attached(pod)),
      detached: (containerID) => runtime.runPromise(policy.detached(containerID))
    }
  }
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

export type { NodeStatus, PolicyStatus }
