/**
 * Traffic between the test's own namespaces: a small HTTP server in one, a bounded GET
 * from another, and a TCP transfer whose rate the receiver measures. Nothing here leaves
 * the namespaces a test created.
 */
import { writeFileSync } from "node:fs"
import { join } from "node:path"

/** An HTTP server inside a namespace, answering `body`; its kill goes into `cleanups` (ended by PID). */
export const serveIn = async (
  cleanups: Array<() => void>,
  netns: string,
  port: number,
  body: string,
  hostname = "0.0.0.0"
): Promise<Bun.Subprocess> => {
  const proc = Bun.spawn(["ip", "netns", "exec", netns, "bun", "-e",
    `Bun.serve({ port: ${port}, hostname: ${JSON.stringify(hostname)}, fetch: () => new Response(${JSON.stringify(body)}) }); console.log("ready")`
  ], { stdout: "pipe", stderr: "pipe" })
  cleanups.push(() => proc.kill())
  await proc.stdout.getReader().read() // "ready": listening
  return proc
}

/** GET from inside a namespace (one request, at most 3 s): the body, or `failed: …`. */
export const fetchIn = (netns: string, url: string): string => {
  const out = Bun.spawnSync(["ip", "netns", "exec", netns, "bun", "-e",
    `const r = await fetch(${JSON.stringify(url)}, { signal: AbortSignal.timeout(3000) }); console.log(await r.text())`
  ], { stdout: "pipe", stderr: "pipe" })
  return out.exitCode === 0 ? out.stdout.toString().trim() : `failed: ${out.stderr.toString().split("\n")[0]}`
}

/** The tiny TCP receiver and sender the rate is measured with (run with bun, inside a namespace). */
const writeTrafficScripts = (dir: string) => {
  const server = join(dir, "receive.ts")
  const client = join(dir, "send.ts")
  writeFileSync(server, `
import { createServer } from "node:net"
const [address, port, total] = [process.argv[2], Number(process.argv[3]), Number(process.argv[4])]
setTimeout(() => process.exit(3), 15_000)
const server = createServer((socket) => {
  let received = 0
  let first = 0
  socket.on("data", (chunk) => {
    if (received === 0) first = performance.now()
    received += chunk.length
    if (received >= total) {
      process.stdout.write(JSON.stringify({ bytes: received, ms: performance.now() - first }) + "\\n", () => process.exit(0))
    }
  })
})
server.listen(port, address, () => process.stdout.write("ready\\n"))
`)
  writeFileSync(client, `
import { connect } from "node:net"
const [address, port, total] = [process.argv[2], Number(process.argv[3]), Number(process.argv[4])]
setTimeout(() => process.exit(3), 15_000)
const socket = connect(port, address, () => socket.end(Buffer.alloc(total, 97)))
socket.on("error", (error) => { console.error(String(error)); process.exit(1) })
socket.on("close", () => process.exit(0))
`)
  return { server, client }
}

/**
 * Sends `sent` bytes over TCP from one namespace to a listener in another and returns the rate
 * the receiver saw, in bit/s, from its first byte to its last. Both processes are always reaped.
 */
export const measure = async (dir: string, fromNs: string, toNs: string, address: string, port: number, sent = 250_000): Promise<number> => {
  const scripts = writeTrafficScripts(dir)
  const receiver = Bun.spawn(["ip", "netns", "exec", toNs, "bun", scripts.server, address, String(port), String(sent)], {
    stdout: "pipe",
    stderr: "pipe"
  })
  try {
    const reader = receiver.stdout.getReader()
    let output = ""
    while (!output.includes("ready\n")) {
      const { value, done } = await reader.read()
      if (done) throw new Error(`receiver did not start: ${await new Response(receiver.stderr).text()}`)
      output += new TextDecoder().decode(value)
    }
    const sender = Bun.spawnSync(["ip", "netns", "exec", fromNs, "bun", scripts.client, address, String(port), String(sent)], {
      stdout: "pipe",
      stderr: "pipe",
      timeout: 20_000
    })
    if (sender.exitCode !== 0) throw new Error(`sender failed: ${sender.stderr.toString()}`)
    while (!output.includes("}\n")) {
      const { value, done } = await reader.read()
      if (done) break
      output += new TextDecoder().decode(value)
    }
    const line = output.split("\n").find((l) => l.startsWith("{"))
    if (line === undefined) throw new Error(`receiver gave no measurement: ${output}`)
    const { bytes, ms } = JSON.parse(line) as { bytes: number; ms: number }
    return (bytes * 8) / (ms / 1000)
  } finally {
    receiver.kill()
    await receiver.exited
  }
}
