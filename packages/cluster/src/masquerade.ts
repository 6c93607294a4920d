/**
 * The cluster's masquerade: traffic from pods (the cluster network) to anywhere outside
 * the cluster network leaves the node with the node's address; pod-to-pod traffic, on
 * this node or across nodes, is never NATed (the receiver sees the sender's pod IP).
 *
 * One keyed nftables table of the agent's, `inet tscni-cluster-masq-<hash>-<skeleton hash>`: two
 * interval sets holding the cluster networks (IPv4, IPv6) and a postrouting chain that
 * only looks them up, so the rules never change and a config change is an element change.
 * Reconciled (created if missing, elements made equal to the config's networks, tables of
 * an older skeleton removed), never flushed.
 */
import { Effect } from "effect"
import { Backend, type BackendError, HOST_NETNS, type NftTable } from "@tscni/backend"
import { formatCidr } from "@tscni/ip"
import { keyedTable, keyedTablePrefix } from "@tscni/steps/nftElements"
import type { ClusterConfig } from "./config.ts"

const KIND = "cluster-masq"
/** the one cluster network a node belongs to: names the table, as a plugin's network does */
const NETWORK = "cluster"
const OWNER = "tscni-agent"

const SKELETON: Omit<NftTable, "name"> = {
  family: "inet",
  sets: [
    { name: "nets4", type: "ipv4_addr", interval: true },
    { name: "nets6", type: "ipv6_addr", interval: true }
  ],
  chains: [{
    name: "postrouting",
    base: { type: "nat", hook: "postrouting", priority: 100 },
    rules: [
      "ip daddr 224.0.0.0/4 return",
      "ip saddr @nets4 ip daddr @nets4 return",
      "ip saddr @nets4 masquerade",
      "ip6 daddr ff00::/8 return",
      "ip6 saddr @nets6 ip6 daddr @nets6 return",
      "ip6 saddr @nets6 masquerade"
    ]
  }]
}

/** The agent's masquerade table, named as every keyed table is (its name changes with its skeleton, so an upgrade makes a new one). */
export const clusterMasqueradeTable: NftTable = keyedTable(KIND, NETWORK, SKELETON)
const PREFIX = keyedTablePrefix(KIND, NETWORK)

/**
 * Makes the masquerade table hold exactly the config's networks; returns what changed.
 */
export const reconcileMasquerade = (config: ClusterConfig): Effect.Effect<ReadonlyArray<string>, BackendError, Backend> =>
  Effect.gen(function*() {
    const backend = yield* Backend
    const table = clusterMasqueradeTable
    const wanted = config.networks.map((net) => ({ set: net.family === 4 ? "nets4" : "nets6", key: formatCidr(net.network), comment: OWNER }))
    const changes: Array<string> = []
    const tables = yield* backend.listNftTables(HOST_NETNS, PREFIX)
    for (const old of tables) {
      if (old.name === table.name && old.family === table.family) continue
      yield* backend.deleteNftTable(HOST_NETNS, old)
      changes.push(`removed nftables table ${old.family} ${old.name} (an older layout)`)
    }
    if (!tables.some((found) => found.name === table.name && found.family === table.family)) {
      yield* backend.createNftTable(HOST_NETNS, table, wanted)
      changes.push(`made nftables table ${table.family} ${table.name}: pods masqueraded outside ${wanted.map((e) => e.key).join(", ")}`)
      return changes
    }
    const present = yield* backend.listNftElements(HOST_NETNS, { family: table.family, name: table.name })
    const key = (element: { readonly set: string; readonly key: string }) => `${element.set} ${element.key}`
    const wantedKeys = new Set(wanted.map(key))
    const extra = present.filter((element) => !wantedKeys.has(key(element)))
    if (extra.length > 0) {
      yield* backend.deleteNftElements(HOST_NETNS, { family: table.family, name: table.name }, extra.map(({ set, key }) => ({ set, key })))
      changes.push(`removed ${extra.map((e) => e.key).join(", ")} from the masquerade`)
    }
    const presentKeys = new Set(present.map(key))
    const missing = wanted.filter((element) => !presentKeys.has(key(element)))
    if (missing.length > 0) {
      yield* backend.addNftElements(HOST_NETNS, table, missing)
      changes.push(`added ${missing.map((e) => e.key).join(", ")} to the masquerade`)
    }
    return changes
  })
