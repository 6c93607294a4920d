/**
 * The node file: what the meta plugin (`tscni-net`) needs to render a pod's network on this
 * node, written by the agent atomically (temp file + rename, so a reader sees the old file or
 * the new one) and kept current. It stays when the agent stops: pods made while the agent is
 * down still get the node's subnet.
 *
 *   {"node":"n1","subnets":["10.244.1.0/24"],"networks":["10.244.0.0/16"],"mtu":1450,"backend":"vxlan"}
 */
import { mkdirSync, readFileSync } from "node:fs"
import { dirname } from "node:path"
import { Effect, Schema } from "effect"
import { replaceFile } from "@tscni/lock"

export const NodeFile = Schema.Struct({
  node: Schema.String,
  /** the node's pod subnets, IPv4 first */
  subnets: Schema.Array(Schema.String),
  /** the cluster's pod networks, in the same order */
  networks: Schema.Array(Schema.String),
  /** the pods' MTU */
  mtu: Schema.Number,
  backend: Schema.Literals(["host-gw", "vxlan", "auto"])
})
export type NodeFile = typeof NodeFile.Type

/** Where the agent writes the node file and the meta plugin reads it, unless told otherwise. */
export const DEFAULT_NODE_FILE = "/run/tscni/node.json"

export class NodeFileError extends Schema.TaggedError<NodeFileError>()("NodeFileError", {
  path: Schema.String,
  message: Schema.String
}) {}

const describe = (error: unknown): string => (error instanceof Error ? error.message : String(error))

let temps = 0
/** A temp file beside `path` that no other write of this process uses. */
const tempOf = (path: string): string => `${path}.${process.pid}.${temps++}.tmp`

/** Writes the node file atomically (mode 0644: plugins run as root, but operators read it). */
export const writeNodeFile = (path: string, content: NodeFile): Effect.Effect<void, NodeFileError> =>
  Effect.try({
    try: () => {
      mkdirSync(dirname(path), { recursive: true, mode: 0o755 })
      replaceFile(path, tempOf(path), JSON.stringify(content) + "\n", 0o644)
    },
    catch: (error) => new NodeFileError({ path, message: describe(error) })
  })

/** The node file as written; undefined when there is none or it does not decode (then it is rewritten). */
export const readNodeFile = (path: string): Effect.Effect<NodeFile | undefined> =>
  Effect.sync(() => {
    try {
      return Schema.decodeUnknownSync(NodeFile)(JSON.parse(readFileSync(path, "utf8")))
    } catch {
      return undefined
    }
  })

/**
 * The cluster's conflist: tscni-net reading the node file, then portmap and bandwidth (the
 * runtime's capabilities). cniVersion 1.0.0: containerd 1.6's libcni refuses a 1.1.0
 * result ("unsupported CNI result version", tests/e2e/containerd), and 1.0.0 works with
 * every runtime tested.
 */
export const clusterConflist = (nodeFile: string) => ({
  cniVersion: "1.0.0",
  name: "tscni-cluster",
  plugins: [
    { type: "tscni-net", nodeFile },
    { type: "portmap", capabilities: { portMappings: true } },
    { type: "bandwidth", capabilities: { bandwidth: true } }
  ]
})

/** Writes a conflist atomically (0644), unless it already says exactly that. */
export const writeConflist = (path: string, conflist: object): Effect.Effect<void, NodeFileError> =>
  Effect.try({
    try: () => {
      const content = JSON.stringify(conflist, null, 2) + "\n"
      let present: string | undefined
      try {
        present = readFileSync(path, "utf8")
      } catch {
        present = undefined
      }
      if (present === content) return
      mkdirSync(dirname(path), { recursive: true, mode: 0o755 })
      replaceFile(path, tempOf(path), content, 0o644)
    },
    catch: (error) => new NodeFileError({ path, message: describe(error) })
  })
