import { describe, expect, it } from "bun:test"
import { canonicalSysctlKey, interfaceNameProblem, sysctlKey, sysctlSegments } from "../src/model.ts"

describe("interfaceNameProblem (the kernel's dev_valid_name)", () => {
  it.each(["eth0", "lo", "eth0.100", "veth-a_b", "a23456789012345", "ééééééé"])("accepts %p", (name) => {
    expect(interfaceNameProblem(name)).toBeUndefined()
  })
  it.each([
    ["", "is empty"],
    ["a234567890123456", "is longer than 15 bytes"],
    // 8 characters, 16 bytes: the kernel counts bytes
    ["éééééééé", "is longer than 15 bytes"],
    [".", "is not a valid interface name"],
    ["..", "is not a valid interface name"],
    ["eth/0", "contains '/', ':', NUL or whitespace"],
    ["eth:0", "contains '/', ':', NUL or whitespace"],
    ["eth 0", "contains '/', ':', NUL or whitespace"],
    ["eth\t0", "contains '/', ':', NUL or whitespace"],
    // the kernel's isspace() is Latin-1's: 0xA0, the second byte of "à" in UTF-8, is a space
    ["à", "contains '/', ':', NUL or whitespace"],
    // a NUL would cut the name short in a path or a netlink attribute
    ["br\u0000x", "contains '/', ':', NUL or whitespace"]
  ])("refuses %p: %s", (name, problem) => {
    expect(interfaceNameProblem(name)).toBe(problem)
  })
})

describe("sysctl keys", () => {
  it("are dotted unless a segment holds a dot; then a '/' path", () => {
    expect(sysctlKey("net", "ipv4", "conf", "eth0", "rp_filter")).toBe("net.ipv4.conf.eth0.rp_filter")
    expect(sysctlKey("net", "ipv4", "conf", "eth0.100", "rp_filter")).toBe("net/ipv4/conf/eth0.100/rp_filter")
  })
  it("split back into the same segments in either form; the canonical form is sysctlKey's", () => {
    expect(sysctlSegments("net.ipv4.ip_forward")).toEqual(["net", "ipv4", "ip_forward"])
    expect(sysctlSegments("/net/ipv4/conf/eth0.100/rp_filter")).toEqual(["net", "ipv4", "conf", "eth0.100", "rp_filter"])
    expect(canonicalSysctlKey("net/ipv4/ip_forward")).toBe("net.ipv4.ip_forward")
    expect(canonicalSysctlKey("/net/ipv4/conf/eth0.100/rp_filter")).toBe("net/ipv4/conf/eth0.100/rp_filter")
  })
})
