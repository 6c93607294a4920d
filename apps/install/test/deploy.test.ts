/** The cluster files: what a DaemonSet installer must have, checked so a careless edit fails. */
import { describe, expect, test } from "bun:test"
import { readFileSync } from "node:fs"
import { join } from "node:path"
import { REPO } from "./helpers.ts"

type Json = Record<string, unknown>
const docs = Bun.YAML.parse(readFileSync(join(REPO, "deploy/daemonset.yaml"), "utf8")) as ReadonlyArray<Json>

const at = (value: unknown, ...path: ReadonlyArray<string | number>): unknown =>
  path.reduce<unknown>((node, key) => (typeof node === "object" && node !== null ? (node as Record<string | number, unknown>)[key] : undefined), value)

describe("deploy/daemonset.yaml", () => {
  const daemonSet = docs.find((doc) => doc.kind === "DaemonSet")
  const pod = at(daemonSet, "spec", "template", "spec") as Json
  const inits = (pod.initContainers ?? []) as ReadonlyArray<Json>
  const install = inits.find((container) => container.name === "install-cni") as Json

  test("a DaemonSet in kube-system: host network, node-critical, tolerates every taint", () => {
    expect(at(daemonSet, "metadata", "namespace")).toBe("kube-system")
    expect(pod.hostNetwork).toBe(true)
    expect(pod.priorityClassName).toBe("system-node-critical")
    expect(pod.tolerations).toContainEqual({ operator: "Exists" })
    expect(at(daemonSet, "spec", "selector", "matchLabels")).toEqual(at(daemonSet, "spec", "template", "metadata", "labels"))
  })

  test("the install-cni init container runs tscni-install into the host dirs, mounted at the same paths", () => {
    const script = (install.command as ReadonlyArray<string>).join(" ")
    expect(script).toContain("/opt/tscni/bin/tscni-install")
    expect(script).toContain("--bin-dir /opt/cni/bin")
    expect(script).toContain("--conf-dir /etc/cni/net.d")
    expect(script).toContain("--conflist-template /opt/tscni/10-tscni.conflist.template")
    expect(script).toContain("POD_CIDR")
    const mounts = install.volumeMounts as ReadonlyArray<Json>
    const volumes = pod.volumes as ReadonlyArray<Json>
    for (const hostDir of ["/opt/cni/bin", "/etc/cni/net.d"]) {
      const volume = volumes.find((v) => at(v, "hostPath", "path") === hostDir)
      expect(volume).toBeDefined()
      expect(mounts).toContainEqual(expect.objectContaining({ name: volume?.name, mountPath: hostDir }))
    }
  })

  test("the pod CIDR comes from the node object, which the service account may read", () => {
    expect(inits.findIndex((c) => c.name === "pod-cidr")).toBeLessThan(inits.indexOf(install))
    expect(pod.serviceAccountName).toBe("tscni")
    const role = docs.find((doc) => doc.kind === "ClusterRole")
    expect(at(role, "rules", 0, "resources")).toEqual(["nodes"])
    const binding = docs.find((doc) => doc.kind === "ClusterRoleBinding")
    expect(at(binding, "subjects", 0)).toEqual({ kind: "ServiceAccount", name: "tscni", namespace: "kube-system" })
  })

  test("then the agent, chrooted into the host's root (propagated mounts), on the host's PIDs, probed on /healthz and /readyz", () => {
    const containers = pod.containers as ReadonlyArray<Json>
    expect(containers).toHaveLength(1)
    const agent = containers[0] as Json
    expect(agent.command).toEqual(["chroot", "/host", "/opt/cni/bin/tscni", "agent", "--socket", "/run/tscni/daemon.sock", "--health-listen", "127.0.0.1:9402"])
    expect(pod.hostPID).toBe(true)
    const mount = (agent.volumeMounts as ReadonlyArray<Json>).find((m) => m.mountPath === "/host") as Json
    expect(mount.mountPropagation).toBe("HostToContainer")
    expect(at((pod.volumes as ReadonlyArray<Json>).find((v) => v.name === mount.name), "hostPath", "path")).toBe("/")
    expect(at(agent, "livenessProbe", "httpGet")).toEqual({ host: "127.0.0.1", path: "/healthz", port: 9402 })
    expect(at(agent, "readinessProbe", "httpGet")).toEqual({ host: "127.0.0.1", path: "/readyz", port: 9402 })
  })
})

describe("deploy/Dockerfile", () => {
  const dockerfile = readFileSync(join(REPO, "deploy/Dockerfile"), "utf8")
  test("debian bookworm-slim with the binaries and the template where the DaemonSet expects them", () => {
    expect(dockerfile).toMatch(/^FROM debian:bookworm-slim$/m)
    expect(dockerfile).toMatch(/^COPY dist\/bin\/tscni dist\/bin\/tscni-install \/opt\/tscni\/bin\/$/m)
    expect(dockerfile).toMatch(/^COPY deploy\/10-tscni\.conflist\.template \/opt\/tscni\/$/m)
  })
})

describe("deploy/10-tscni-cluster.conflist and deploy/tscni-agent-etcd.service", () => {
  const conflist = JSON.parse(readFileSync(join(REPO, "deploy/10-tscni-cluster.conflist"), "utf8")) as { plugins: Array<{ type: string; nodeFile?: string; capabilities?: unknown }> }
  const unit = readFileSync(join(REPO, "deploy/tscni-agent-etcd.service"), "utf8")

  test("the conflist starts with tscni-net reading the node file the unit's agent writes, then portmap and bandwidth with their capabilities", () => {
    expect(conflist.plugins.map((plugin) => plugin.type)).toEqual(["tscni-net", "portmap", "bandwidth"])
    const nodeFile = conflist.plugins[0]!.nodeFile
    expect(unit).toContain(`--node-file ${nodeFile}`)
    expect(conflist.plugins[1]!.capabilities).toEqual({ portMappings: true })
    expect(conflist.plugins[2]!.capabilities).toEqual({ bandwidth: true })
  })

  test("the unit runs the installed multicall binary's agent with the etcd datastore and stops it with SIGTERM", () => {
    expect(unit).toMatch(/^ExecStart=\/opt\/cni\/bin\/tscni agent .*--etcd-endpoints \$\{TSCNI_ETCD_ENDPOINTS\} --node \$\{TSCNI_NODE\}/m)
    expect(unit).toContain("KillSignal=SIGTERM")
    expect(unit).toContain("EnvironmentFile=/etc/tscni/agent.env")
  })
})

describe("deploy/daemonset-cluster.yaml", () => {
  const cluster = Bun.YAML.parse(readFileSync(join(REPO, "deploy/daemonset-cluster.yaml"), "utf8")) as ReadonlyArray<Json>
  const daemonSet = cluster.find((doc) => doc.kind === "DaemonSet")
  const pod = at(daemonSet, "spec", "template", "spec") as Json
  const agent = (pod.containers as ReadonlyArray<Json>)[0] as Json
  const command = agent.command as ReadonlyArray<string>
  const flag = (name: string) => command[command.indexOf(name) + 1]
  const mountOf = (volume: string) => (agent.volumeMounts as ReadonlyArray<Json>).find((mount) => mount.name === volume) as Json

  test("RBAC: the agent's service account may get, list, watch and patch nodes, list and watch namespaces, pods and network policies, and nothing else", () => {
    expect(at(cluster.find((doc) => doc.kind === "ClusterRole"), "rules")).toEqual([
      { apiGroups: [""], resources: ["nodes"], verbs: ["get", "list", "watch", "patch"] },
      { apiGroups: [""], resources: ["namespaces", "pods"], verbs: ["list", "watch"] },
      { apiGroups: ["networking.k8s.io"], resources: ["networkpolicies"], verbs: ["list", "watch"] }
    ])
    expect(at(cluster.find((doc) => doc.kind === "ClusterRoleBinding"), "subjects", 0)).toEqual({ kind: "ServiceAccount", name: pod.serviceAccountName, namespace: "kube-system" })
  })

  test("the agent runs chrooted with the kubernetes datastore, and what it reads from the pod is mounted where the chroot sees it", () => {
    expect(command.slice(0, 4)).toEqual(["chroot", "/host", "/opt/cni/bin/tscni", "agent"])
    expect(flag("--datastore")).toBe("kubernetes")
    expect(flag("--node")).toBe("$(NODE_NAME)")
    expect(agent.env).toContainEqual({ name: "NODE_NAME", valueFrom: { fieldRef: { fieldPath: "spec.nodeName" } } })
    expect(`/host${flag("--cluster-config")}`.startsWith(`${mountOf("net-conf").mountPath}/`)).toBe(true)
    const configMap = cluster.find((doc) => doc.kind === "ConfigMap")
    expect(Object.keys(at(configMap, "data") as Json)).toContain(String(flag("--cluster-config")!.split("/").pop()))
    expect(`/host${flag("--service-account-dir")}`).toBe(String(mountOf("service-account").mountPath))
    expect(mountOf("host-root")).toEqual(expect.objectContaining({ mountPath: "/host", mountPropagation: "HostToContainer" }))
    // the conflist is the agent's to write, into the host's CNI conf dir, once the node has its subnet
    expect(flag("--write-conflist")).toBe("/etc/cni/net.d/10-tscni-cluster.conflist")
    const install = (pod.initContainers as ReadonlyArray<Json>)[0] as Json
    expect(install.command).toContain("--no-conflist")
  })
})
