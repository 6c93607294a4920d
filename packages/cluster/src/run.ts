/**
 * The cluster side as the agent process starts it: the etcd datastore and the Linux backend
 * wired in, run in the background until stopped. Loaded by `tscni agent` only when a
 * datastore is configured, so an agent that only serves calls never loads a gRPC client.
 */
import { Effect, Fiber, Layer } from "effect"
import { layer as linuxBackend } from "@tscni/backend-linux"
import { formatCidr } from "@tscni/ip"
import { decodeClusterConfig } from "./config.ts"
import { etcdKvLayer } from "./etcdKv.ts"
import { Kv } from "./kv.ts"
import { releaseSubnets } from "./leases.ts"
import { type NodeAgentOptions, type NodeStatus, runNodeAgent } from "./nodeAgent.ts"

export interface ClusterOptions extends NodeAgentOptions {
  readonly etcdEndpoints: ReadonlyArray<string>
}

/** Starts the cluster side; `stop` interrupts it (nothing is released: see nodeAgent.ts). */
export const startCluster = (options: ClusterOptions, onStatus: (status: NodeStatus) => void): { readonly stop: () => Promise<void> } => {
  const fiber = Effect.runFork(
    runNodeAgent(options, onStatus).pipe(Effect.provide(Layer.merge(etcdKvLayer({ endpoints: options.etcdEndpoints }), linuxBackend)))
  )
  return { stop: () => Effect.runPromise(Fiber.interrupt(fiber)).then(() => undefined) }
}

/** `tscni agent leave`: deletes the node's leases (not its reservations); the subnets released. */
export const leaveCluster = (options: { readonly etcdEndpoints: ReadonlyArray<string>; readonly prefix: string; readonly node: string }) =>
  Effect.runPromise(
    Effect.gen(function*() {
      const kv = yield* Kv
      const key = `${options.prefix}/config`
      const { entries } = yield* kv.list(key)
      const config = yield* decodeClusterConfig(entries.find((entry) => entry.key === key)?.value ?? "")
      return (yield* releaseSubnets(kv, options.prefix, config, options.node)).map(formatCidr)
    }).pipe(Effect.provide(etcdKvLayer({ endpoints: options.etcdEndpoints })))
  )

export type { NodeStatus }
