import { describe, expect, test } from "bun:test"
import {
  SUPPORTED_VERSIONS,
  compareVersions,
  convertResult,
  decodeResult,
  encodeResult,
  type Result
} from "../src/index.ts"
import { fail, ok } from "./helpers.ts"

/** A result using every field 1.1.0 defines. */
const rich: Result = {
  cniVersion: "1.1.0",
  interfaces: [
    { name: "cni0", mac: "0a:58:0a:01:02:01", mtu: 1500 },
    { name: "veth1234", mac: "0a:58:0a:01:02:02" },
    {
      name: "eth0",
      mac: "0a:58:0a:01:02:03",
      mtu: 1450,
      sandbox: "/var/run/netns/blue",
      socketPath: "/run/vhost/sock0",
      pciID: "0000:00:1f.6"
    }
  ],
  ips: [
    { address: "10.1.2.3/24", gateway: "10.1.2.1", interface: 2 },
    { address: "fd00::2/64", gateway: "fd00::1", interface: 2 },
    { address: "192.168.5.9/32" }
  ],
  routes: [
    { dst: "0.0.0.0/0", gw: "10.1.2.1", mtu: 1400, advmss: 1360, priority: 10, table: 100, scope: 0 },
    { dst: "::/0", gw: "fd00::1", priority: 5 },
    { dst: "10.9.0.0/16" }
  ],
  dns: { nameservers: ["10.1.2.1", "fd00::1"], domain: "cluster.local", search: ["svc.cluster.local"], options: ["ndots:5"] }
}

/** What survives a trip through the wire form of `version`. */
const expectedAt = (version: string, cniVersion: string): Result => {
  if (compareVersions(version, "1.1.0") >= 0) return { ...rich, cniVersion }
  return {
    cniVersion,
    interfaces: [
      { name: "cni0", mac: "0a:58:0a:01:02:01" },
      { name: "veth1234", mac: "0a:58:0a:01:02:02" },
      { name: "eth0", mac: "0a:58:0a:01:02:03", sandbox: "/var/run/netns/blue" }
    ],
    ips: rich.ips ?? [],
    routes: [{ dst: "0.0.0.0/0", gw: "10.1.2.1" }, { dst: "::/0", gw: "fd00::1" }, { dst: "10.9.0.0/16" }],
    dns: rich.dns ?? {}
  }
}

const earlier = (a: string, b: string) => (compareVersions(a, b) <= 0 ? a : b)

/** Every key anywhere in a JSON value whose value is null or undefined. */
const nullish = (value: unknown, path = ""): Array<string> => {
  if (value === null || value === undefined) return [path]
  if (Array.isArray(value)) return value.flatMap((v, i) => nullish(v, `${path}[${i}]`))
  if (typeof value === "object") return Object.entries(value).flatMap(([k, v]) => nullish(v, `${path}.${k}`))
  return []
}

describe("encodeResult wire forms", () => {
  test("0.3.0 / 0.3.1 / 0.4.0 carry ips[].version, basic interfaces and dst/gw routes", () => {
    for (const v of ["0.3.0", "0.3.1", "0.4.0"]) {
      const wire = ok(encodeResult(rich, v))
      expect(wire).toEqual({
        cniVersion: v,
        interfaces: [
          { name: "cni0", mac: "0a:58:0a:01:02:01" },
          { name: "veth1234", mac: "0a:58:0a:01:02:02" },
          { name: "eth0", mac: "0a:58:0a:01:02:03", sandbox: "/var/run/netns/blue" }
        ],
        ips: [
          { version: "4", address: "10.1.2.3/24", gateway: "10.1.2.1", interface: 2 },
          { version: "6", address: "fd00::2/64", gateway: "fd00::1", interface: 2 },
          { version: "4", address: "192.168.5.9/32" }
        ],
        routes: [{ dst: "0.0.0.0/0", gw: "10.1.2.1" }, { dst: "::/0", gw: "fd00::1" }, { dst: "10.9.0.0/16" }],
        dns: rich.dns
      })
    }
  })

  test("1.0.0 has no ips[].version and drops the 1.1.0-only route and interface fields", () => {
    const wire = ok(encodeResult(rich, "1.0.0"))
    expect(wire).toEqual({ ...expectedAt("1.0.0", "1.0.0") })
    expect(JSON.stringify(wire)).not.toContain('"version"')
    expect(JSON.stringify(wire)).not.toContain("advmss")
  })

  test("1.1.0 keeps everything", () => {
    expect(ok(encodeResult(rich, "1.1.0"))).toEqual(rich)
  })

  test("sets cniVersion, omits absent keys, never emits null", () => {
    const minimal: Result = { cniVersion: "0.4.0" }
    for (const v of SUPPORTED_VERSIONS) {
      expect(ok(encodeResult(minimal, v))).toEqual({ cniVersion: v })
      expect(nullish(ok(encodeResult(rich, v)))).toEqual([])
    }
    expect(ok(encodeResult({ cniVersion: "1.1.0", dns: {} }, "1.1.0"))).toEqual({ cniVersion: "1.1.0" })
    expect(ok(encodeResult({ cniVersion: "1.1.0", ips: [] }, "0.4.0"))).toEqual({ cniVersion: "0.4.0", ips: [] })
  })

  test("unsupported target version is code 1", () => {
    expect(fail(encodeResult(rich, "0.2.0")).code).toBe(1)
    expect(fail(encodeResult(rich, "2.0.0")).msg).toContain("2.0.0")
  })

  test("an invalid in-memory result is an internal error naming the field", () => {
    const bad: Result = { cniVersion: "1.1.0", ips: [{ address: "10.0.0.1" }] }
    const e = fail(encodeResult(bad, "1.1.0"))
    expect(e.code).toBe(100)
    expect(e.msg).toContain("ips[0].address")
  })
})

describe("round trips across every pair of versions", () => {
  for (const from of SUPPORTED_VERSIONS) {
    for (const to of SUPPORTED_VERSIONS) {
      test(`${from} -> ${to}`, () => {
        const wireFrom = ok(encodeResult(rich, from))
        expect(ok(decodeResult(wireFrom))).toEqual(expectedAt(from, from))
        const wireTo = ok(convertResult(wireFrom, to))
        expect(ok(decodeResult(wireTo))).toEqual(expectedAt(earlier(from, to), to))
        // the converted wire form is exactly what encoding the surviving data in `to` gives
        expect(wireTo).toEqual(ok(encodeResult(expectedAt(earlier(from, to), to), to)))
        // and back to the original version
        const back = ok(convertResult(wireTo, from))
        expect(ok(decodeResult(back))).toEqual(expectedAt(earlier(from, to), from))
      })
    }
  }
})

describe("decodeResult", () => {
  test("0.3.1 / 0.4.0 accept and drop a correct ips[].version", () => {
    const r = ok(
      decodeResult({
        cniVersion: "0.3.1",
        ips: [
          { version: "4", address: "10.0.0.2/24", gateway: "10.0.0.1" },
          { version: "6", address: "fd00::5/64" }
        ]
      })
    )
    expect(r).toEqual({ cniVersion: "0.3.1", ips: [{ address: "10.0.0.2/24", gateway: "10.0.0.1" }, { address: "fd00::5/64" }] })
  })

  test("a missing ips[].version is tolerated (reference loopback omits it)", () => {
    expect(ok(decodeResult({ cniVersion: "0.3.1", ips: [{ address: "127.0.0.1/8" }] }))).toEqual({
      cniVersion: "0.3.1",
      ips: [{ address: "127.0.0.1/8" }]
    })
  })

  test("a mismatched ips[].version is rejected with code 6 naming the field", () => {
    const e = fail(decodeResult({ cniVersion: "0.4.0", ips: [{ version: "4", address: "10.0.0.2/24" }, { version: "4", address: "fd00::5/64" }] }))
    expect(e.code).toBe(6)
    expect(e.msg).toContain("ips[1].version")
    expect(fail(decodeResult({ cniVersion: "0.4.0", ips: [{ version: "5", address: "10.0.0.2/24" }] })).msg).toContain(
      "ips[0].version"
    )
    expect(
      fail(decodeResult({ cniVersion: "0.4.0", ips: [{ version: "4", address: "10.0.0.2/24", gateway: "fd00::1" }] })).msg
    ).toContain("ips[0].gateway")
  })

  test("the given version overrides the json's (prevResult decoded in the config's version)", () => {
    const prev = { ips: [{ version: "4", address: "10.0.0.2/24" }], routes: [{ dst: "0.0.0.0/0", mtu: 1400 }] }
    expect(ok(decodeResult(prev, "0.4.0"))).toEqual({
      cniVersion: "0.4.0",
      ips: [{ address: "10.0.0.2/24" }],
      routes: [{ dst: "0.0.0.0/0" }]
    })
    // 1.1.0 route fields are not part of the 1.0.0 wire form
    expect(ok(decodeResult({ cniVersion: "1.0.0", routes: [{ dst: "0.0.0.0/0", mtu: 1400 }] })).routes).toEqual([
      { dst: "0.0.0.0/0" }
    ])
    expect(ok(decodeResult({ cniVersion: "1.1.0", routes: [{ dst: "0.0.0.0/0", mtu: 1400 }] })).routes).toEqual([
      { dst: "0.0.0.0/0", mtu: 1400 }
    ])
  })

  test("bad content is code 6 naming the field", () => {
    const cases: ReadonlyArray<[unknown, string]> = [
      [{ cniVersion: "1.0.0", ips: [{ address: "10.0.0.300/24" }] }, "ips[0].address"],
      [{ cniVersion: "1.0.0", ips: [{ address: "10.0.0.3" }] }, "ips[0].address"],
      [{ cniVersion: "1.0.0", ips: [{ address: "fd00::1/129" }] }, "ips[0].address"],
      [{ cniVersion: "1.0.0", ips: [{ address: "10.0.0.3/24", gateway: "nope" }] }, "ips[0].gateway"],
      [{ cniVersion: "1.0.0", ips: [{ address: "10.0.0.3/24", interface: -1 }] }, "ips[0].interface"],
      [{ cniVersion: "1.1.0", routes: [{ dst: "0.0.0.0/0" }, { gw: "10.0.0.1" }] }, "routes[1].dst"],
      [{ cniVersion: "1.1.0", routes: [{ dst: "0.0.0.0/0", table: 1.5 }] }, "routes[0].table"],
      [{ cniVersion: "1.1.0", interfaces: [{ mac: "x" }] }, "interfaces[0].name"],
      [{ cniVersion: "1.1.0", dns: { nameservers: "10.0.0.1" } }, "dns.nameservers"]
    ]
    for (const [json, field] of cases) {
      const e = fail(decodeResult(json))
      expect([field, e.code]).toEqual([field, 6])
      expect(e.msg).toContain(field)
    }
  })

  test("accepts IPv4 and IPv6 CIDRs in their usual spellings", () => {
    const good = ["10.1.2.3/24", "0.0.0.0/0", "fd00::2/64", "::/0", "2001:db8::/32", "::ffff:10.0.0.1/128", "1:2:3:4:5:6:7:8/64"]
    for (const address of good) {
      expect(ok(decodeResult({ cniVersion: "1.0.0", ips: [{ address }] })).ips).toEqual([{ address }])
    }
    const bad = ["10.1.2/24", "010.1.2.3/24", "10.1.2.3/33", "fd00:::2/64", "1:2:3:4:5:6:7:8:9/64", "fe80::1%eth0/64", "10.1.2.3/24/1", "/24"]
    for (const address of bad) {
      expect([address, fail(decodeResult({ cniVersion: "1.0.0", ips: [{ address }] })).code]).toEqual([address, 6])
    }
  })

  test("version problems", () => {
    expect(fail(decodeResult({ ips: [] })).code).toBe(6)
    expect(fail(decodeResult({ ips: [] })).msg).toContain("cniVersion")
    expect(fail(decodeResult({ cniVersion: "0.2.0" })).code).toBe(1)
    expect(fail(decodeResult({ cniVersion: "1.0.0" }, "7.0.0")).code).toBe(1)
    expect(fail(decodeResult("nope", "1.0.0")).code).toBe(6)
    expect(fail(convertResult({ cniVersion: "1.0.0" }, "0.1.0")).code).toBe(1)
  })
})
