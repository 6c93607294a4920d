import { describe, expect, test } from "bun:test"
import { Exit, Schema } from "effect"
import {
  decodePluginKeys,
  IntegerInRange,
  NetConf,
  NetConfList,
  NetworkName,
  decodeNetConf,
  decodeNetConfList,
  parseNetConf,
  validAttachments
} from "../src/index.ts"
import { fail, ok } from "./helpers.ts"

const bridgeConf = {
  cniVersion: "1.0.0",
  name: "podman1",
  type: "bridge",
  bridge: "cni-podman1",
  isGateway: true,
  ipMasq: true,
  hairpinMode: true,
  capabilities: { ips: true, portMappings: false },
  ipam: {
    type: "host-local",
    routes: [{ dst: "0.0.0.0/0" }],
    ranges: [[{ subnet: "10.89.0.0/24", gateway: "10.89.0.1" }]]
  },
  dns: { nameservers: ["10.89.0.1"], extraDnsKey: 1 },
  args: { cni: { ips: ["10.89.0.5"] } },
  runtimeConfig: { portMappings: [{ hostPort: 8080, containerPort: 80, protocol: "tcp" }] },
  prevResult: { cniVersion: "1.0.0", ips: [{ address: "10.89.0.5/24" }] },
  nested: { deep: [1, { x: null }] }
} as const

describe("IntegerInRange", () => {
  const vlan = decodePluginKeys(Schema.Struct({ vlan: IntegerInRange(0, 4094) }))
  test.each([0, 1, 4094])("accepts %p", (n) => {
    expect(ok(vlan({ vlan: n }))).toEqual({ vlan: n })
  })
  test.each([-1, 4095, 1.5, Number.NaN])("rejects %p as code 7 naming the field and the range", (n) => {
    const error = fail(vlan({ vlan: n }))
    expect(error.code).toBe(7)
    expect(error.msg).toContain("vlan")
    expect(error.msg).toContain("an integer from 0 to 4094")
  })
})

describe("NetworkName", () => {
  const valid = (s: string) => Exit.isSuccess(Schema.decodeUnknownExit(NetworkName)(s))
  test.each(["a", "podman", "cni-podman1", "My_Net.v2", "0net", "a-", "n.", "A.b_c-d9"])("accepts %p", (name) => {
    expect(valid(name)).toBe(true)
  })
  test.each(["", "-net", "_net", ".net", "net work", "net/1", "net:1", "ünï", "net\n"])("rejects %p", (name) => {
    expect(valid(name)).toBe(false)
  })
})

describe("NetConf", () => {
  test("decodes a full plugin config and preserves unknown keys through decode + encode", () => {
    const conf = ok(decodeNetConf(bridgeConf))
    expect(conf.name).toBe("podman1")
    expect(conf.ipam?.type).toBe("host-local")
    expect(conf["bridge"]).toBe("cni-podman1")
    expect(conf.ipam?.["ranges"]).toEqual(bridgeConf.ipam.ranges)
    expect(conf).toEqual(bridgeConf)
    const encoded = Schema.encodeSync(NetConf)(conf)
    expect(encoded).toEqual(bridgeConf)
    expect(JSON.parse(JSON.stringify(encoded))).toEqual(bridgeConf)
  })

  test("minimal config", () => {
    expect(ok(decodeNetConf({ cniVersion: "0.4.0", name: "n", type: "loopback" }))).toEqual({
      cniVersion: "0.4.0",
      name: "n",
      type: "loopback"
    })
  })

  test("missing cniVersion is code 7 naming the field", () => {
    const e = fail(decodeNetConf({ name: "n", type: "bridge" }))
    expect(e.code).toBe(7)
    expect(e.msg).toBe("cniVersion: missing")
  })

  test("bad fields are code 7 naming the path", () => {
    expect(fail(decodeNetConf({ ...bridgeConf, name: "-bad" }))).toMatchObject({ code: 7 })
    expect(fail(decodeNetConf({ ...bridgeConf, name: "-bad" })).msg).toStartWith("name: ")
    expect(fail(decodeNetConf({ ...bridgeConf, type: 3 })).msg).toStartWith("type: ")
    // an ipam section without a type is the reference's way to say "no IPAM" (an L2-only bridge)
    expect(ok(decodeNetConf({ ...bridgeConf, ipam: {} })).ipam).toEqual({})
    expect(fail(decodeNetConf({ ...bridgeConf, ipam: { type: 7 } })).msg).toStartWith("ipam.type: ")
    expect(fail(decodeNetConf({ ...bridgeConf, capabilities: { ips: "yes" } })).msg).toStartWith("capabilities.ips: ")
    expect(fail(decodeNetConf({ ...bridgeConf, dns: { nameservers: ["a", 1] } })).msg).toStartWith(
      "dns.nameservers[1]: "
    )
    expect(fail(decodeNetConf({ ...bridgeConf, prevResult: [] })).msg).toStartWith("prevResult: ")
    const att = fail(decodeNetConf({ ...bridgeConf, "cni.dev/valid-attachments": [{ containerID: "c" }] }))
    expect(att.msg).toBe('["cni.dev/valid-attachments"][0].ifname: missing')
    const root = fail(decodeNetConf("nope"))
    expect(root.code).toBe(7)
    expect(root.msg).toStartWith("network config: ")
  })

  test("parseNetConf: bad JSON is code 6, bad config code 7", () => {
    const bad = fail(parseNetConf("{ not json"))
    expect(bad.code).toBe(6)
    expect(bad.details).toBeString()
    expect(fail(parseNetConf("")).code).toBe(6)
    expect(fail(parseNetConf('{"name":"n","type":"x"}')).code).toBe(7)
    expect(ok(parseNetConf(JSON.stringify(bridgeConf)))).toEqual(bridgeConf)
  })

  test("validAttachments prefers cni.dev/valid-attachments, falls back to cni.dev/attachments", () => {
    const base = { cniVersion: "1.1.0", name: "n", type: "bridge" }
    const a = [{ containerID: "c1", ifname: "eth0" }]
    const b = [{ containerID: "c2", ifname: "eth1" }]
    expect(validAttachments(ok(decodeNetConf(base)))).toBeUndefined()
    expect(validAttachments(ok(decodeNetConf({ ...base, "cni.dev/attachments": b })))).toEqual(b)
    expect(validAttachments(ok(decodeNetConf({ ...base, "cni.dev/valid-attachments": a })))).toEqual(a)
    expect(
      validAttachments(ok(decodeNetConf({ ...base, "cni.dev/valid-attachments": a, "cni.dev/attachments": b })))
    ).toEqual(a)
    expect(validAttachments(ok(decodeNetConf({ ...base, "cni.dev/valid-attachments": [] })))).toEqual([])
  })
})

describe("NetConfList", () => {
  const list = {
    cniVersion: "0.4.0",
    cniVersions: ["0.4.0", "1.0.0"],
    name: "podman",
    disableCheck: true,
    disableGC: false,
    plugins: [
      { type: "bridge", bridge: "cni-podman0", ipam: { type: "host-local", ranges: [[{ subnet: "10.88.0.0/16" }]] } },
      { type: "portmap", capabilities: { portMappings: true } },
      { type: "firewall", backend: "" },
      { type: "tuning" }
    ],
    podmanLabels: { a: "b" }
  }

  test("decodes and preserves unknown keys at list and plugin level", () => {
    const decoded = ok(decodeNetConfList(list))
    expect<unknown>(decoded).toEqual(list)
    expect<unknown>(Schema.encodeSync(NetConfList)(decoded)).toEqual(list)
    expect(decoded.plugins[2]?.["backend"]).toBe("")
  })

  test("rejects empty plugins, plugins without type, bad names", () => {
    const empty = fail(decodeNetConfList({ ...list, plugins: [] }))
    expect(empty.code).toBe(7)
    expect(empty.msg).toStartWith("plugins")
    expect(fail(decodeNetConfList({ ...list, plugins: [{ type: "a" }, { bridge: "x" }] })).msg).toBe(
      "plugins[1].type: missing"
    )
    expect(fail(decodeNetConfList({ ...list, name: "bad name" })).msg).toStartWith("name: ")
    expect(fail(decodeNetConfList({ ...list, disableCheck: "true" })).msg).toStartWith("disableCheck: ")
    expect(fail(decodeNetConfList({ ...list, cniVersion: undefined })).code).toBe(7)
  })
})
