/**
 * Where the cluster's state lives, behind one interface for the agent: the cluster config,
 * the node's hold on its subnet(s), everyone's subnets (the peers), and word of changes.
 * Two implementations: etcd (etcdDatastore.ts: leases the agent claims) and the Kubernetes
 * API (kubeDatastore.ts: the subnets kube-controller-manager assigned, in Node objects).
 */
import { Context, type Effect, type Scope } from "effect"
import type { ClusterConfig } from "./config.ts"
import type { HeldSubnet, NodeIdentity, SubnetClaim } from "./leases.ts"

/** The node's hold on its subnets while the scope it was taken in is open. */
export interface Hold {
  readonly subnets: ReadonlyArray<HeldSubnet>
  /** succeeds, saying why, when the hold ended (lease lost, claim gone, podCIDRs changed); fails when the datastore watch broke */
  readonly ended: Effect.Effect<string, unknown>
}

export interface DatastoreShape {
  /** what the datastore is, for logs: `etcd http://…` */
  readonly describe: string
  readonly config: Effect.Effect<ClusterConfig, unknown>
  /** takes the node's subnets (previous: what the node file says it had) and publishes its identity */
  readonly hold: (config: ClusterConfig, identity: NodeIdentity, previous: ReadonlyArray<string>) => Effect.Effect<Hold, unknown, Scope.Scope>
  /** every node's subnets now */
  readonly claims: (config: ClusterConfig) => Effect.Effect<ReadonlyArray<SubnetClaim>, unknown>
  /** runs until it fails, running `onChange` after every change of anyone's subnets */
  readonly changes: (onChange: Effect.Effect<void>) => Effect.Effect<never, unknown>
}

export class Datastore extends Context.Service<Datastore, DatastoreShape>()("tscni/cluster/Datastore") {}
