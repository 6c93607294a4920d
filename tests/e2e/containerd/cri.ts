/**
 * A CRI (runtime.v1) client for the tests, on @grpc/grpc-js with the subset proto beside
 * it (cri.proto), over containerd's unix socket: what kubelet says to containerd about pod
 * sandboxes. Smoke-tested under Bun first (unary calls over a unix socket: docs/install.md).
 */
import * as grpc from "@grpc/grpc-js"
import * as loader from "@grpc/proto-loader"
import { join } from "node:path"

const definition = loader.loadSync(join(import.meta.dir, "cri.proto"), { keepCase: false, longs: String, enums: String, defaults: true })
const runtime = (grpc.loadPackageDefinition(definition) as unknown as { runtime: { v1: { RuntimeService: grpc.ServiceClientConstructor } } }).runtime.v1

type Json = Record<string, any>

export interface CriClient {
  readonly call: (method: string, request: Json) => Promise<Json>
  readonly close: () => void
}

/** A client on containerd's CRI socket. */
export const criClient = (socket: string): CriClient => {
  const client = new runtime.RuntimeService(`unix://${socket}`, grpc.credentials.createInsecure())
  return {
    call: (method, request) =>
      new Promise((resolve, reject) => {
        const fn = (client as unknown as Record<string, (request: Json, options: grpc.CallOptions, done: (error: grpc.ServiceError | null, response: Json) => void) => void>)[method]!
        fn.call(client, request, { deadline: Date.now() + 120_000 }, (error, response) => (error === null ? resolve(response) : reject(error)))
      }),
    close: () => client.close()
  }
}
