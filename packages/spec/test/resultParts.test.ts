import { describe, expect, it } from "bun:test"
import { hostInterfaceNames, podIpConfigs, type Result } from "../src/index.ts"

const bridgeResult: Result = {
  cniVersion: "1.1.0",
  interfaces: [
    { name: "cni0", mac: "aa:00:00:00:00:01" },
    { name: "veth1234", mac: "aa:00:00:00:00:02", sandbox: "" },
    { name: "eth0", mac: "aa:00:00:00:00:03", sandbox: "/var/run/netns/p1" }
  ],
  ips: [
    { address: "10.88.0.1/16", interface: 0 },
    { address: "10.88.0.2/16", gateway: "10.88.0.1", interface: 2 },
    { address: "fd88::2/64", interface: 2 }
  ]
}

describe("the pod's and the host's parts of a result", () => {
  it("pod IPs are those on sandbox interfaces; host-side ones (bridge) are left out", () => {
    expect(podIpConfigs(bridgeResult).map((ip) => ip.address)).toEqual(["10.88.0.2/16", "fd88::2/64"])
  })
  it("an IP naming no interface (an IPAM-only result) is the pod's", () => {
    expect(podIpConfigs({ cniVersion: "1.1.0", ips: [{ address: "10.1.0.5/24" }] }).map((ip) => ip.address)).toEqual(["10.1.0.5/24"])
  })
  it("host interfaces are those without a sandbox, an empty sandbox included", () => {
    expect(hostInterfaceNames(bridgeResult)).toEqual(["cni0", "veth1234"])
  })
  it("no result, no parts", () => {
    expect(podIpConfigs(undefined)).toEqual([])
    expect(hostInterfaceNames(undefined)).toEqual([])
  })
})
