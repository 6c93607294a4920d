/**
 * `cni policy` against a real etcd (Debian's etcd-server on loopback, started here): apply
 * checks every object of a file before writing any and stores each where the agents read it;
 * delete removes them; list shows what is stored and what the agents cannot decode; explain
 * answers from the compiled model. Observed with etcdctl.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test"
import { mkdtempSync, rmSync, writeFileSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { type RunningEtcd, startEtcd } from "./etcd.ts"
import { binary } from "./harness.ts"

let etcd: RunningEtcd
let dir: string
const PREFIX = "/tscni-cli-test"

beforeAll(async () => {
  etcd = await startEtcd()
  dir = mkdtempSync(join(tmpdir(), "tscni-policy-cli-"))
})

afterAll(async () => {
  await etcd?.stop()
  rmSync(dir, { recursive: true, force: true })
})

const cni = (...args: ReadonlyArray<string>) => {
  const run = Bun.spawnSync([binary("cni"), "policy", ...args, "--etcd-endpoints", etcd.endpoint, "--etcd-prefix", PREFIX])
  return { exitCode: run.exitCode, stdout: run.stdout.toString(), stderr: run.stderr.toString() }
}
const file = (name: string, text: string) => {
  const path = join(dir, name)
  writeFileSync(path, text)
  return path
}
const stored = () => etcd.etcdctl("get", "--prefix", "--keys-only", `${PREFIX}/`).split("\n").filter((line) => line !== "").sort()

const WORLD = `apiVersion: v1
kind: Namespace
metadata:
  name: x
  labels: {ns: x}
---
apiVersion: v1
kind: Pod
metadata:
  name: a
  namespace: x
  labels: {pod: a}
spec:
  containers:
  - name: c
    ports:
    - {name: http, containerPort: 8080}
---
apiVersion: v1
kind: Pod
metadata: {name: b, labels: {pod: b}}
---
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: web, namespace: x}
spec:
  podSelector: {matchLabels: {pod: a}}
  ingress:
  - from: [{namespaceSelector: {matchLabels: {ns: y}}}]
    ports: [{port: http}]
`

describe("cni policy (etcd)", () => {
  test("apply stores every object of a multi-document YAML file where the agents read it, namespaces filled in", () => {
    const run = cni("apply", "-f", file("world.yaml", WORLD), "-n", "x")
    expect(run).toMatchObject({ exitCode: 0, stderr: "" })
    expect(run.stdout).toBe("namespace x configured\npod x/a configured\npod x/b configured\nnetworkpolicy x/web configured\n")
    expect(stored()).toEqual([`${PREFIX}/namespaces/x`, `${PREFIX}/pods/x/a`, `${PREFIX}/pods/x/b`, `${PREFIX}/policies/x/web`])
    const pod = JSON.parse(etcd.etcdctl("get", "--print-value-only", `${PREFIX}/pods/x/b`))
    expect(pod.metadata).toEqual({ name: "b", labels: { pod: "b" }, namespace: "x" })
  })

  test("a file with one bad object writes nothing and names the object and field", () => {
    const before = stored()
    const run = cni("apply", "-f", file("bad.json", JSON.stringify([
      { kind: "Namespace", metadata: { name: "z" } },
      { kind: "NetworkPolicy", metadata: { name: "bad", namespace: "z" }, spec: { podSelector: {}, ingress: [{ ports: [{ port: 80, endPort: 79 }] }] } }
    ])))
    expect(run.exitCode).not.toBe(0)
    expect(run.stdout).toBe("")
    expect(run.stderr).toContain("bad.json[1]")
    expect(run.stderr).toContain("spec.ingress[0].ports[0].endPort: 79 must be a port from 80 to 65535")
    expect(stored()).toEqual(before)
  })

  test("list shows the policies and what the agents cannot decode", () => {
    etcd.etcdctl("put", `${PREFIX}/policies/x/broken`, "{not json")
    const run = cni("list", "-n", "x")
    expect(run.exitCode).toBe(0)
    expect(run.stdout.split("\n")[1]).toMatch(/^x\s+web\s+pod=a\s+Ingress\s+1 in, 0 out$/)
    expect(run.stdout).toContain(`${PREFIX}/policies/x/broken: not JSON`)
    const json = JSON.parse(cni("list", "-A", "--json").stdout)
    expect(json.policies.map((p: { name: string }) => p.name)).toEqual(["web"])
    etcd.etcdctl("del", `${PREFIX}/policies/x/broken`)
  })

  test("explain judges a connection from the model: named port resolved at the destination, namespace selector, pods by address", () => {
    // the addresses, as agents record them when they serve the pods' ADDs
    etcd.etcdctl("put", `${PREFIX}/endpoints/x/a`, JSON.stringify({ node: "n1", ips: ["10.244.1.2"], containerID: "c-a" }))
    etcd.etcdctl("put", `${PREFIX}/endpoints/x/b`, JSON.stringify({ node: "n2", ips: ["10.244.2.2"], containerID: "c-b" }))
    etcd.etcdctl("put", `${PREFIX}/endpoints/y/c`, JSON.stringify({ node: "n2", ips: ["10.244.2.3"], containerID: "c-c" }))
    etcd.etcdctl("put", `${PREFIX}/namespaces/y`, JSON.stringify({ metadata: { name: "y", labels: { ns: "y" } } }))
    const allowed = cni("explain", "y/c", "x/a", "8080/tcp")
    expect(allowed.exitCode).toBe(0)
    expect(allowed.stdout).toBe([
      "ALLOWED: y/c (10.244.2.3) -> x/a (10.244.1.2) 8080/tcp",
      "  egress  (allowed): no egress policy selects y/c: its egress is unrestricted",
      "  ingress (allowed): allowed by x/web ingress[0]",
      ""
    ].join("\n"))
    expect(cni("explain", "10.244.2.2", "x/a", "8080/tcp").stdout).toContain("DENIED: x/b (10.244.2.2) -> x/a (10.244.1.2) 8080/tcp")
    expect(cni("explain", "y/c", "x/a", "8081/tcp").stdout).toContain("ingress (denied): x/a is isolated for ingress by x/web and no rule of theirs admits this")
    expect(JSON.parse(cni("explain", "y/c", "x/a", "icmp", "--json").stdout).allowed).toBe(false)
    expect(cni("explain", "x/a", "192.0.2.1", "443/tcp").stdout).toContain("ALLOWED")
    const bad = cni("explain", "x/nope", "x/a", "80/tcp")
    expect(bad.exitCode).not.toBe(0)
    expect(bad.stderr).toContain("'x/nope' is neither an IP address nor a known pod")
    expect(cni("explain", "x/a", "x/b", "80/http").stderr).toContain("'80/http' is not PORT/tcp")
  })

  test("delete removes the file's objects and says which were not there", () => {
    const run = cni("delete", "-f", file("some.yaml", WORLD.split("---\n").slice(2).join("---\n")), "-n", "x")
    expect(run).toMatchObject({ exitCode: 0, stdout: "pod x/b deleted\nnetworkpolicy x/web deleted\n" })
    expect(cni("delete", "-f", join(dir, "some.yaml"), "-n", "x").stdout).toBe("pod x/b not found\nnetworkpolicy x/web not found\n")
    expect(stored().filter((key) => !key.includes("/endpoints/"))).toEqual([`${PREFIX}/namespaces/x`, `${PREFIX}/namespaces/y`, `${PREFIX}/pods/x/a`])
  })
})
