/**
 * Regenerates `proto/rpc.json` inside the patched etcd3 package (patches/etcd3@1.1.2.patch):
 * etcd3 loads its .proto files from `${__dirname}` at run time, which a `bun build --compile`
 * binary does not have (docs/adr/0006-etcd-client.md). The patch loads this JSON descriptor
 * instead, which the bundler embeds. Run after `bun patch etcd3@1.1.2`, then commit the patch.
 */
import protobuf from "protobufjs"
import { join } from "node:path"

const dir = join(import.meta.dir, "..", "..", "..", "node_modules", ".bun", "etcd3@1.1.2", "node_modules", "etcd3", "proto")
// keepCase: etcd3 reads the fields by their proto names (create_revision, …), as proto-loader's keepCase does
const root = new protobuf.Root().loadSync(join(dir, "rpc.proto"), { keepCase: true })
await Bun.write(join(dir, "rpc.json"), JSON.stringify(root.toJSON({ keepComments: false }), null, 1) + "\n")
