import { formatIp, fromBytes, parseIp, toBytes } from "@tscni/ip"

/**
 * nft's data types as the kernel holds them in set keys and map values, for the types a
 * keyed table's sets use (@tscni/backend nftSets.ts): the type id nft stores in a set's
 * NFTA_SET_KEY_TYPE / NFTA_SET_DATA_TYPE (nftables' include/datatype.h, `enum datatypes`;
 * a concatenation packs its fields' ids in 6-bit chunks, the first field in the highest),
 * and each value's bytes. In a concatenation every field is padded to a multiple of 4 bytes
 * (nf_tables' 32-bit registers). Texts are nft's own spelling of each value, the canonical
 * forms `nftElementProblem` accepts, so what is read back compares equal to what was added.
 *
 * Anything else (another type, a range of a type that has none) is `undefined` here: the
 * caller then leaves that set to libnftables.
 */

/** One field type: its nft name and id, its size, and its text both ways. */
export interface FieldType {
  readonly id: number
  readonly name: string
  /** bytes of one value, before a concatenation pads it */
  readonly size: number
  /** one value's bytes from its text, undefined when the text is not one */
  readonly parse: (text: string) => Uint8Array | undefined
  /** one value's text; undefined when nft would print it in a way this code does not */
  readonly format: (bytes: Uint8Array) => string | undefined
  /**
   * How a range of this type prints in an interval set: `prefix` (addresses: `a/len` when
   * the range is a network, else `a-b`), `range` (`a-b`), or `none` (never a range).
   */
  readonly ranges: "prefix" | "range" | "none"
}

const bigEndian = (bytes: Uint8Array): bigint => bytes.reduce((value, byte) => (value << 8n) | BigInt(byte), 0n)

const address = (family: 4 | 6) => ({
  parse: (text: string): Uint8Array | undefined => {
    const ip = parseIp(text)
    return ip?.family === family && formatIp(ip) === text ? toBytes(ip) : undefined
  },
  format: (bytes: Uint8Array): string => formatIp(fromBytes(family, bytes))
})

/** inet_proto as nft spells the protocols tscni uses; others by number. */
const PROTOCOL_NAMES: Readonly<Record<number, string>> = { 1: "icmp", 6: "tcp", 17: "udp", 58: "icmpv6", 132: "sctp" }
const PROTOCOL_NUMBERS: Readonly<Record<string, number>> = {
  ...Object.fromEntries(Object.entries(PROTOCOL_NAMES).map(([number, name]) => [name, Number(number)])),
  // what nft prints for 58 when /etc/protocols names it so
  "ipv6-icmp": 58
}

const DECIMAL = /^(0|[1-9][0-9]*)$/
const IFNAMSIZ = 16
const IFNAME = /^"([^\s"/{};\\:]{1,15})"$/

const FIELD_TYPES: ReadonlyArray<FieldType> = [
  { id: 7, name: "ipv4_addr", size: 4, ranges: "prefix", ...address(4) },
  { id: 8, name: "ipv6_addr", size: 16, ranges: "prefix", ...address(6) },
  {
    id: 9,
    name: "ether_addr",
    size: 6,
    ranges: "none",
    parse: (text) => /^[0-9a-f]{2}(:[0-9a-f]{2}){5}$/.test(text) ? Uint8Array.from(text.split(":"), (part) => Number.parseInt(part, 16)) : undefined,
    format: (bytes) => [...bytes].map((byte) => byte.toString(16).padStart(2, "0")).join(":")
  },
  {
    id: 12,
    name: "inet_proto",
    size: 1,
    ranges: "none",
    parse: (text) => {
      const number = PROTOCOL_NUMBERS[text] ?? (DECIMAL.test(text) && Number(text) <= 255 ? Number(text) : undefined)
      return number === undefined ? undefined : Uint8Array.of(number)
    },
    format: (bytes) => PROTOCOL_NAMES[bytes[0]!] ?? String(bytes[0])
  },
  {
    id: 13,
    name: "inet_service",
    size: 2,
    ranges: "range",
    parse: (text) => DECIMAL.test(text) && Number(text) <= 65535 ? Uint8Array.of(Number(text) >> 8, Number(text) & 0xff) : undefined,
    format: (bytes) => String((bytes[0]! << 8) | bytes[1]!)
  },
  {
    id: 19,
    name: "mark",
    size: 4,
    ranges: "range",
    // host byte order (little-endian on every platform tscni runs on)
    parse: (text) => {
      if (!/^0x[0-9a-f]{8}$/.test(text)) return undefined
      const bytes = new Uint8Array(4)
      new DataView(bytes.buffer).setUint32(0, Number.parseInt(text.slice(2), 16), true)
      return bytes
    },
    format: (bytes) => `0x${new DataView(bytes.buffer, bytes.byteOffset, 4).getUint32(0, true).toString(16).padStart(8, "0")}`
  },
  {
    id: 41,
    name: "ifname",
    size: IFNAMSIZ,
    ranges: "none",
    parse: (text) => {
      const name = IFNAME.exec(text)?.[1]
      const encoded = name === undefined ? undefined : new TextEncoder().encode(name)
      if (encoded === undefined || encoded.byteLength >= IFNAMSIZ) return undefined
      const bytes = new Uint8Array(IFNAMSIZ) // nul-padded
      bytes.set(encoded)
      return bytes
    },
    format: (bytes) => {
      const end = bytes.indexOf(0)
      const name = new TextDecoder().decode(end < 0 ? bytes : bytes.subarray(0, end))
      return IFNAME.test(`"${name}"`) ? `"${name}"` : undefined
    }
  }
]

const BY_ID = new Map(FIELD_TYPES.map((type) => [type.id, type]))
const BY_NAME = new Map(FIELD_TYPES.map((type) => [type.name, type]))

/** nft's TYPE_BITS: the width of one field's id in a concatenation's type id */
const TYPE_BITS = 6

/** The fields of a set's key or value type id, first field first; undefined when one is not known here. */
export const fieldsOfType = (id: number): ReadonlyArray<FieldType> | undefined => {
  const ids: Array<number> = []
  for (let rest = id; rest !== 0; rest = Math.floor(rest / (1 << TYPE_BITS))) ids.unshift(rest % (1 << TYPE_BITS))
  const fields = ids.map((field) => BY_ID.get(field))
  return fields.length === 0 || fields.some((field) => field === undefined) ? undefined : (fields as Array<FieldType>)
}

/** The type id of a concatenation of named types (the inverse of fieldsOfType; tests use it). */
export const typeIdOf = (type: string): number | undefined => {
  let id = 0
  for (const name of type.split(" . ")) {
    const field = BY_NAME.get(name)
    if (field === undefined) return undefined
    id = id * (1 << TYPE_BITS) + field.id
  }
  return id
}

/** nft's text of a key or value type: `ipv4_addr . inet_service`. */
export const typeText = (fields: ReadonlyArray<FieldType>): string => fields.map((field) => field.name).join(" . ")

const padded = (size: number): number => (size + 3) & ~3

/** Bytes of a key or value of `fields`: a concatenation pads each field to 4 bytes, a lone field is its own size. */
export const dataLength = (fields: ReadonlyArray<FieldType>): number =>
  fields.length === 1 ? fields[0]!.size : fields.reduce((sum, field) => sum + padded(field.size), 0)

/** The last value of a network: the address with its host bits set. */
const lastOfPrefix = (start: Uint8Array, prefix: number): Uint8Array =>
  start.map((byte, i) => {
    const networkBits = Math.max(0, Math.min(8, prefix - i * 8))
    return byte | (0xff >> networkBits)
  })

/** The prefix length when start..end is exactly one network, else undefined. */
const prefixOf = (start: Uint8Array, end: Uint8Array): number | undefined => {
  const width = start.byteLength * 8
  const hostBits = bigEndian(start) ^ bigEndian(end)
  // host bits: all ones below the prefix, and the start has none of them set
  if ((hostBits & (hostBits + 1n)) !== 0n || (bigEndian(start) & hostBits) !== 0n) return undefined
  return width - hostBits.toString(2).replace(/^0$/, "").length
}

/** One field's start and end from its text; a prefix or range only in an interval set. */
const parseField = (field: FieldType, text: string, interval: boolean): { start: Uint8Array; end: Uint8Array } | undefined => {
  const slash = text.indexOf("/")
  if (interval && field.ranges === "prefix" && slash >= 0) {
    const start = field.parse(text.slice(0, slash))
    const length = text.slice(slash + 1)
    if (start === undefined || !DECIMAL.test(length) || Number(length) >= field.size * 8) return undefined
    const end = lastOfPrefix(start, Number(length))
    // a network address: no host bits
    return prefixOf(start, end) === Number(length) ? { start, end } : undefined
  }
  const dash = text.indexOf("-")
  if (interval && field.ranges !== "none" && dash > 0) {
    const start = field.parse(text.slice(0, dash))
    const end = field.parse(text.slice(dash + 1))
    return start !== undefined && end !== undefined && bigEndian(start) < bigEndian(end) ? { start, end } : undefined
  }
  const value = field.parse(text)
  return value === undefined ? undefined : { start: value, end: value }
}

/** One field's text from its start and end, as nft prints it. */
const formatField = (field: FieldType, start: Uint8Array, end: Uint8Array): string | undefined => {
  const first = field.format(start)
  if (first === undefined) return undefined
  if (start.every((byte, i) => byte === end[i])) return first
  if (field.ranges === "none") return undefined
  const prefix = field.ranges === "prefix" ? prefixOf(start, end) : undefined
  if (prefix !== undefined) return `${first}/${prefix}`
  const last = field.format(end)
  return last === undefined ? undefined : `${first}-${last}`
}

/** A key or value as the kernel takes it: its start and (in an interval set) its end. */
export interface EncodedData {
  readonly start: Uint8Array
  readonly end: Uint8Array
}

/**
 * A key or value from its text (` . ` between fields), or undefined when the text is not
 * one of `fields`. `interval`: fields may be prefixes or ranges.
 */
export const encodeData = (fields: ReadonlyArray<FieldType>, text: string, interval: boolean): EncodedData | undefined => {
  const parts = text.split(" . ")
  if (parts.length !== fields.length) return undefined
  const start = new Uint8Array(dataLength(fields))
  const end = new Uint8Array(start.byteLength)
  let offset = 0
  for (const [i, field] of fields.entries()) {
    const value = parseField(field, parts[i]!, interval)
    if (value === undefined) return undefined
    start.set(value.start, offset)
    end.set(value.end, offset)
    offset += fields.length === 1 ? field.size : padded(field.size)
  }
  return { start, end }
}

/** A key or value's text from its start and end (the same bytes when it is no range); undefined when not printable here. */
export const decodeData = (fields: ReadonlyArray<FieldType>, start: Uint8Array, end: Uint8Array = start): string | undefined => {
  if (start.byteLength !== dataLength(fields) || end.byteLength !== start.byteLength) return undefined
  const parts: Array<string> = []
  let offset = 0
  for (const field of fields) {
    const text = formatField(field, start.subarray(offset, offset + field.size), end.subarray(offset, offset + field.size))
    if (text === undefined) return undefined
    parts.push(text)
    offset += fields.length === 1 ? field.size : padded(field.size)
  }
  return parts.join(" . ")
}
