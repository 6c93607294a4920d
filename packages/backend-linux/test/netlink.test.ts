import { describe, expect, test } from "bun:test"
import type { LinkInfo } from "@tscni/backend"
import {
  attrString,
  attrU32,
  AttributeWriter,
  decodeAttributeList,
  decodeAttributes,
  decodeError,
  decodeMessages,
  encodeMessage,
  NLM_F_ACK_TLVS,
  NLM_F_CAPPED,
  NLMSG_ERROR
} from "../src/netlink/message.ts"
import { bridgeVlanRequest, createLinkAttributes, decodeLink } from "../src/rtnl/link.ts"

describe("netlink encoding", () => {
  test("attributes are padded to 4 bytes and decode back", () => {
    const data = new AttributeWriter().string(3, "eth0").u32(4, 1500).u8(7, 1).nested(18, (inner) => inner.string(1, "veth")).finish()
    expect(data.byteLength % 4).toBe(0)
    const attributes = decodeAttributes(data)
    expect(attrString(attributes, 3)).toBe("eth0")
    expect(attrU32(attributes, 4)).toBe(1500)
    expect(attributes.get(7)?.[0]).toBe(1)
    // nested flag is masked off the type
    expect(attrString(decodeAttributes(attributes.get(18)!), 1)).toBe("veth")
  })

  test("messages split back into header fields and payload", () => {
    const header = new Uint8Array(16).fill(7)
    const one = encodeMessage(16, 0x5, 42, header, new AttributeWriter().u32(4, 9000).finish())
    const two = encodeMessage(3, 0x2, 43, new Uint8Array(4))
    const both = new Uint8Array(one.byteLength + two.byteLength)
    both.set(one)
    both.set(two, one.byteLength)
    const messages = decodeMessages(both)
    expect(messages.map((m) => [m.type, m.flags, m.seq])).toEqual([[16, 0x5, 42], [3, 0x2, 43]])
    expect(attrU32(decodeAttributes(messages[0]!.payload.subarray(16)), 4)).toBe(9000)
  })

  test("an error message carries errno and the extended-ack text", () => {
    const request = encodeMessage(16, 0x5, 9, new Uint8Array(16))
    const tlv = new AttributeWriter().string(1, "Address already assigned").finish()
    const capped = new Uint8Array(4 + 16 + tlv.byteLength)
    const view = new DataView(capped.buffer)
    view.setInt32(0, -17, true)
    capped.set(request.subarray(0, 16), 4)
    capped.set(tlv, 20)
    const message = { type: NLMSG_ERROR, flags: NLM_F_ACK_TLVS | NLM_F_CAPPED, seq: 9, payload: capped }
    expect(decodeError(message)).toEqual({ errno: 17, text: "Address already assigned", offset: undefined })
    // uncapped: the whole request is echoed before the TLVs
    const full = new Uint8Array(4 + request.byteLength + tlv.byteLength)
    new DataView(full.buffer).setInt32(0, -17, true)
    full.set(request, 4)
    full.set(tlv, 4 + request.byteLength)
    expect(decodeError({ ...message, flags: NLM_F_ACK_TLVS, payload: full })).toEqual({ errno: 17, text: "Address already assigned", offset: undefined })
    // the attribute the kernel refused, by its offset in the request (NLMSGERR_ATTR_OFFS)
    const blamed = new AttributeWriter().u32(2, 36).finish()
    const withOffset = new Uint8Array(4 + 16 + blamed.byteLength)
    new DataView(withOffset.buffer).setInt32(0, -2, true)
    withOffset.set(request.subarray(0, 16), 4)
    withOffset.set(blamed, 20)
    expect(decodeError({ ...message, payload: withOffset })).toEqual({ errno: 2, text: undefined, offset: 36 })
  })
})

describe("bridge VLAN, alias and bridge requests", () => {
  const port: LinkInfo = {
    netns: "host",
    index: 7,
    name: "veth0",
    kind: "veth",
    up: true,
    mtu: 1500,
    mac: "02:00:00:00:00:07",
    txqlen: 1000,
    promisc: false,
    allmulti: false,
    master: 3
  }
  const bridge: LinkInfo = { ...port, index: 3, name: "br0", kind: "bridge" }
  const AF_BRIDGE = 7
  const IFLA_AF_SPEC = 26

  const vlanInfos = (attributes: Uint8Array) => {
    const spec = decodeAttributes(attributes).get(IFLA_AF_SPEC)!
    return decodeAttributeList(spec).map(({ type, data }) => [type, Array.from(data)])
  }

  test("a port VLAN is an AF_BRIDGE RTM_SETLINK with one IFLA_BRIDGE_VLAN_INFO {flags, vid}", () => {
    const request = bridgeVlanRequest(true, port, { vid: 10, pvid: true, untagged: true })
    expect(request.type).toBe(19)
    expect(request.header[0]).toBe(AF_BRIDGE)
    expect(new DataView(request.header.buffer).getInt32(4, true)).toBe(7)
    // flags PVID|UNTAGGED = 6, vid 10, both little-endian u16
    expect(vlanInfos(request.attributes)).toEqual([[2, [6, 0, 10, 0]]])
  })

  test("deleting is RTM_DELLINK, still AF_BRIDGE (AF_UNSPEC would delete the link)", () => {
    const request = bridgeVlanRequest(false, port, { vid: 4094, pvid: false, untagged: false })
    expect(request.type).toBe(17)
    expect(request.header[0]).toBe(AF_BRIDGE)
    expect(vlanInfos(request.attributes)).toEqual([[2, [0, 0, 0xfe, 0x0f]]])
  })

  test("a bridge's own VLAN carries IFLA_BRIDGE_FLAGS = BRIDGE_FLAGS_SELF first", () => {
    const request = bridgeVlanRequest(true, bridge, { vid: 1, pvid: false, untagged: true })
    expect(vlanInfos(request.attributes)).toEqual([
      [0, [2, 0]],
      [2, [4, 0, 1, 0]]
    ])
  })

  test("vlanFiltering goes in IFLA_LINKINFO / IFLA_INFO_DATA as IFLA_BR_VLAN_FILTERING, only when on", () => {
    const info = (attributes: Uint8Array) => decodeAttributes(decodeAttributes(attributes).get(18)!)
    const on = info(createLinkAttributes("bridge", { name: "br0" }, undefined, { vlanFiltering: true }))
    expect(attrString(on, 1)).toBe("bridge")
    expect(Array.from(decodeAttributes(on.get(2)!).get(7)!)).toEqual([1])
    expect(info(createLinkAttributes("bridge", { name: "br0" }, undefined, { vlanFiltering: false })).has(2)).toBe(false)
    expect(info(createLinkAttributes("ifb", { name: "ifb0" }, undefined, { vlanFiltering: true })).has(2)).toBe(false)
  })

  test("a link message with IFLA_IFALIAS and bridge data decodes alias and vlanFiltering", () => {
    const header = new Uint8Array(16)
    new DataView(header.buffer).setInt32(4, 3, true)
    const attributes = new AttributeWriter()
      .string(3, "br0")
      .string(20, "tscni:net1")
      .nested(18, (info) => info.string(1, "bridge").nested(2, (data) => data.u32(1, 1500).u8(7, 1)))
      .finish()
    const payload = new Uint8Array(16 + attributes.byteLength)
    payload.set(header)
    payload.set(attributes, 16)
    const decoded = decodeLink("host", { type: 16, flags: 0, seq: 1, payload })
    expect(decoded).toMatchObject({ name: "br0", kind: "bridge", alias: "tscni:net1", vlanFiltering: true })
  })
})
