/**
 * Traffic between the test's own namespaces: a small HTTP server in one, a bounded GET
 * from another. Nothing here leaves the namespaces a test created.
 */

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
