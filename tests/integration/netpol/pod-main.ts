/**
 * The probe agent of one pod, started inside the pod's network namespace:
 *
 *   ip netns exec <netns> <bun> pod-main.ts <controlSocketPath> [firstSourcePort]
 *
 * It serves TCP (accept, then nothing) and UDP (echo to the sender) on ports 80 and 81 of
 * every address, IPv4 and IPv6, and takes orders on a unix socket at `controlSocketPath`
 * (the filesystem is shared across namespaces, so orders never cross the pod network):
 * newline-delimited JSON `{ id, probes: [{ ip, port, protocol }], timeoutMs }`, answered
 * with `{ id, results }` (or `{ id, error }`) once every probe of the request, all run
 * concurrently, has an outcome. It prints `ready` once every listener is up, and exits on
 * SIGTERM/SIGINT or when its stdin closes (its parent is gone).
 *
 * Every probe leaves from a source port this process has never used before (a counter from
 * `firstSourcePort`, default 20000, over 35000 ports), so a conntrack entry of an earlier
 * probe can never make a new probe part of an "established" flow.
 */
import { connect, type Socket as NetSocket } from "node:net"
import { fstatSync, rmSync } from "node:fs"
import { flushUnsent, writeAll } from "./socket-writes.ts"

const SERVED_PORTS = [80, 81] as const
const SOURCE_PORT_SPAN = 35_000

interface ProbeSpec {
  readonly ip: string
  readonly port: number
  readonly protocol: "TCP" | "UDP"
}

const controlPath = process.argv[2]
if (controlPath === undefined) {
  console.error("usage: pod-main.ts <controlSocketPath> [firstSourcePort]")
  process.exit(2)
}
const firstSourcePort = Number(process.argv[3] ?? 20_000)

let sourcePortsUsed = 0
/** The next never-used source port (wraps after SOURCE_PORT_SPAN probes). */
const nextSourcePort = (): number => firstSourcePort + (sourcePortsUsed++ % SOURCE_PORT_SPAN)

const isIPv6 = (ip: string): boolean => ip.includes(":")

// ---------------------------------------------------------------------------------------
// servers: "::" is dual-stack on Linux (v4 arrives as ::ffff:a.b.c.d); 0.0.0.0 if IPv6 is off

const listenTcp = (port: number): { stop: () => void } => {
  const options = { port, socket: { data: () => {}, error: () => {} } }
  try {
    const listener = Bun.listen({ ...options, hostname: "::" })
    return { stop: () => listener.stop(true) }
  } catch {
    const listener = Bun.listen({ ...options, hostname: "0.0.0.0" })
    return { stop: () => listener.stop(true) }
  }
}

const listenUdp = async (port: number): Promise<{ stop: () => void }> => {
  const socket = {
    data: (server: Bun.udp.Socket<"buffer">, data: Buffer, fromPort: number, fromAddress: string) => {
      try {
        server.send(data, fromPort, fromAddress)
      } catch {
        // no route back: the prober sees a timeout
      }
    },
    error: () => {}
  }
  let server: Bun.udp.Socket<"buffer">
  try {
    server = await Bun.udpSocket({ hostname: "::", port, socket })
  } catch {
    server = await Bun.udpSocket({ hostname: "0.0.0.0", port, socket })
  }
  return { stop: () => server.close() }
}

// ---------------------------------------------------------------------------------------
// probes

/** A socket bound to a fresh source port; EADDRINUSE (someone else holds it) moves on to the next. */
const withFreshPort = async <T>(open: (port: number) => Promise<T>): Promise<T> => {
  for (let attempt = 0; ; attempt++) {
    try {
      return await open(nextSourcePort())
    } catch (error) {
      if (attempt >= 20 || !String(error).includes("EADDRINUSE")) throw error
    }
  }
}

/** TCP: the handshake completes within the timeout (node:net, since Bun.connect cannot pick the source port). */
const probeTcp = (ip: string, port: number, timeoutMs: number): Promise<boolean> =>
  new Promise((resolve) => {
    let settled = false
    let socket: NetSocket | undefined
    const finish = (ok: boolean) => {
      if (settled) return
      settled = true
      clearTimeout(timer)
      socket?.destroy()
      resolve(ok)
    }
    const timer = setTimeout(() => finish(false), timeoutMs)
    const open = (localPort: number) => {
      socket = connect({ host: ip, port, localPort, localAddress: isIPv6(ip) ? "::" : "0.0.0.0" })
      socket.once("connect", () => finish(true))
      socket.once("error", (error: NodeJS.ErrnoException) => {
        // the source port was taken: take the next one, within the same deadline
        if (error.code === "EADDRINUSE" && !settled) open(nextSourcePort())
        else finish(false)
      })
    }
    open(nextSourcePort())
  })

/**
 * UDP: a datagram carrying a unique token reaches the echo server and comes back within the
 * timeout. The datagram is resent (same source port, so the same flow) at 1/4 and 1/2 of the
 * timeout, against a first packet lost to neighbour resolution.
 */
const probeUdp = async (ip: string, port: number, timeoutMs: number): Promise<boolean> => {
  const token = `probe-${process.pid}-${crypto.randomUUID()}`
  const { promise, resolve } = Promise.withResolvers<boolean>()
  const client = await withFreshPort((localPort) =>
    Bun.udpSocket({
      hostname: isIPv6(ip) ? "::" : "0.0.0.0",
      port: localPort,
      socket: {
        data: (_socket, data) => {
          if (data.toString() === token) resolve(true)
        },
        error: () => {}
      }
    })
  )
  const send = () => {
    try {
      client.send(token, port, ip)
    } catch {
      // unreachable: the timeout answers false
    }
  }
  const timers = [
    setTimeout(() => resolve(false), timeoutMs),
    setTimeout(send, timeoutMs / 4),
    setTimeout(send, timeoutMs / 2)
  ]
  try {
    send()
    return await promise
  } finally {
    for (const timer of timers) clearTimeout(timer)
    client.close()
  }
}

const probe = (spec: ProbeSpec, timeoutMs: number): Promise<boolean> =>
  spec.protocol === "TCP" ? probeTcp(spec.ip, spec.port, timeoutMs) : probeUdp(spec.ip, spec.port, timeoutMs)

// ---------------------------------------------------------------------------------------
// control channel

const answer = async (line: string): Promise<string> => {
  let id: unknown = null
  try {
    const request = JSON.parse(line) as { id?: unknown; probes?: Array<ProbeSpec>; timeoutMs?: number }
    id = request.id ?? null
    if (!Array.isArray(request.probes)) throw new Error("probes must be an array")
    const timeoutMs = request.timeoutMs ?? 2000
    const results = await Promise.all(request.probes.map((spec) => probe(spec, timeoutMs)))
    return JSON.stringify({ id, results })
  } catch (error) {
    return JSON.stringify({ id, error: String(error) })
  }
}

const buffers = new WeakMap<object, string>()

rmSync(controlPath, { force: true }) // a socket file left by an earlier run
const control = Bun.listen({
  unix: controlPath,
  socket: {
    data: (socket, data) => {
      const text = (buffers.get(socket) ?? "") + data.toString()
      const lines = text.split("\n")
      buffers.set(socket, lines.pop() ?? "")
      for (const line of lines) {
        if (line.trim() === "") continue
        void answer(line).then((reply) => writeAll(socket, Buffer.from(reply + "\n")))
      }
    },
    drain: flushUnsent,
    error: () => {}
  }
})

const servers = [
  ...SERVED_PORTS.map(listenTcp),
  ...(await Promise.all(SERVED_PORTS.map(listenUdp)))
]

let stopping = false
const shutdown = (code: number): void => {
  if (stopping) return
  stopping = true
  for (const server of servers) server.stop()
  control.stop(true)
  rmSync(controlPath, { force: true })
  process.exit(code)
}
process.on("SIGTERM", () => shutdown(0))
process.on("SIGINT", () => shutdown(0))

console.log("ready")

// a parent holding our stdin open as a pipe or socket (prober.ts does): when it is gone, so are we
const stdin = fstatSync(0)
if (stdin.isFIFO() || stdin.isSocket()) {
  void (async () => {
    const reader = Bun.stdin.stream().getReader()
    while (!(await reader.read()).done) {
      // nothing is ever sent; only the end of file matters
    }
    shutdown(0)
  })()
}
