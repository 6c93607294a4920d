import { BackendError, type NftElement, type NftElementKey, type NftTableRef } from "@tscni/backend"
import { kernelError, KernelCallFailed } from "../errors.ts"
import { AttributeWriter, type Attributes, attrString, decodeAttributeList, decodeAttributes, NLMSG_HDRLEN, NLM_F_CREATE, NLM_F_EXCL } from "../netlink/message.ts"
import { type BatchFailure, type BatchMessage, netfilterSocket, type RouteSocket } from "../netlink/socket.ts"
import { dataLength, decodeData, type EncodedData, encodeData, type FieldType, fieldsOfType, typeText } from "./nftTypes.ts"

/**
 * The elements of a keyed table's sets over nfnetlink (NETLINK_NETFILTER, subsystem
 * nf_tables), without libnftables: libnftables 1.0.6 fills its cache before each command
 * (every chain of every table for `create`/`delete element`, every element of every set for
 * `get element`), so each pod's call would cost what the node holds. Here a call reads the
 * definition of the sets it names (NFT_MSG_GETSET for that one set, cached) and the elements
 * it names, nothing else; a listing dumps the sets of one table only.
 *
 * Writes are one nfnetlink batch (one transaction: all or nothing), every message acked.
 * Sets whose types this code does not know (nftTypes.ts), single-field interval sets (held
 * by the kernel as start and end elements) and object maps are reported as unsupported: the
 * caller (nftSets.ts) leaves those to libnftables.
 */

const NFNL_SUBSYS_NFTABLES = 10
const NFT_MSG_NEWSET = 9
const NFT_MSG_GETSET = 10
const NFT_MSG_NEWSETELEM = 12
const NFT_MSG_GETSETELEM = 13
const NFT_MSG_DELSETELEM = 14

const NFTA_SET_TABLE = 1
const NFTA_SET_NAME = 2
const NFTA_SET_FLAGS = 3
const NFTA_SET_KEY_TYPE = 4
const NFTA_SET_KEY_LEN = 5
const NFTA_SET_DATA_TYPE = 6
const NFTA_SET_DATA_LEN = 7

const NFT_SET_ANONYMOUS = 0x1
const NFT_SET_INTERVAL = 0x4
const NFT_SET_MAP = 0x8
const NFT_SET_OBJECT = 0x40

const NFTA_SET_ELEM_LIST_TABLE = 1
const NFTA_SET_ELEM_LIST_SET = 2
const NFTA_SET_ELEM_LIST_ELEMENTS = 3
const NFTA_LIST_ELEM = 1

const NFTA_SET_ELEM_KEY = 1
const NFTA_SET_ELEM_DATA = 2
const NFTA_SET_ELEM_FLAGS = 3
const NFTA_SET_ELEM_USERDATA = 6
const NFTA_SET_ELEM_KEY_END = 10
const NFT_SET_ELEM_INTERVAL_END = 0x1
const NFT_SET_ELEM_CATCHALL = 0x2

const NFTA_DATA_VALUE = 1
const NFTA_DATA_VERDICT = 2
const NFTA_VERDICT_CODE = 1
const NFTA_VERDICT_CHAIN = 2
/** NFTA_SET_DATA_TYPE of a verdict map */
const NFT_DATA_VERDICT = 0xffffff00

const ENOENT = 2

/** libnftnl's udata TLV type of an element's comment (NFTNL_UDATA_SET_ELEM_COMMENT) */
const UDATA_COMMENT = 0

/** nfgen_family (NFPROTO_*) of each family */
const FAMILY_CODES: Readonly<Record<NftTableRef["family"], number>> = { inet: 1, ip: 2, netdev: 5, bridge: 7, ip6: 10 }

/** Element attributes per message, well under the 64 KiB a nested attribute can hold. */
const MESSAGE_BUDGET = 32 * 1024
const NFGENMSG_LENGTH = 4

const type = (message: number): number => (NFNL_SUBSYS_NFTABLES << 8) | message
const nfgenmsg = (family: NftTableRef["family"]): Uint8Array => Uint8Array.of(FAMILY_CODES[family], 0, 0, 0)
const where = (table: NftTableRef): string => `${table.family} ${table.name}`

/** nf_tables' u32 attributes are in network byte order. */
const be32 = (attributes: Attributes, attribute: number): number | undefined => {
  const data = attributes.get(attribute)
  return data && data.byteLength >= 4 ? new DataView(data.buffer, data.byteOffset, 4).getUint32(0, false) : undefined
}

const be32Bytes = (value: number): Uint8Array => {
  const bytes = new Uint8Array(4)
  new DataView(bytes.buffer).setUint32(0, value >>> 0, false)
  return bytes
}

const invalid = (operation: string, message: string) =>
  new KernelCallFailed(new BackendError({ operation, reason: "Invalid", message: `${operation}: ${message}` }))

const isErrno = (error: unknown, name: string): boolean => error instanceof KernelCallFailed && error.error.errno === name

// ---- set definitions ----

/** What the kernel says about one set: enough to write and read its elements. */
export interface SetDefinition {
  readonly name: string
  readonly key: ReadonlyArray<FieldType>
  /** a map's value type (undefined: a set) */
  readonly data: ReadonlyArray<FieldType> | "verdict" | undefined
  readonly interval: boolean
  readonly anonymous: boolean
  /** why this code cannot handle the set's elements (libnftables does), or undefined */
  readonly unsupported: string | undefined
}

const parseSet = (payload: Uint8Array): SetDefinition & { readonly table: string | undefined } => {
  const attributes = decodeAttributes(payload.subarray(NFGENMSG_LENGTH))
  const flags = be32(attributes, NFTA_SET_FLAGS) ?? 0
  const keyType = be32(attributes, NFTA_SET_KEY_TYPE) ?? 0
  const key = fieldsOfType(keyType)
  const map = (flags & NFT_SET_MAP) !== 0
  const dataType = be32(attributes, NFTA_SET_DATA_TYPE)
  const data = !map ? undefined : dataType === NFT_DATA_VERDICT ? "verdict" : dataType === undefined ? undefined : fieldsOfType(dataType)
  const interval = (flags & NFT_SET_INTERVAL) !== 0
  const unsupported = (flags & NFT_SET_OBJECT) !== 0
    ? "an object map"
    : key === undefined
    ? `key type ${keyType}`
    : dataLength(key) !== be32(attributes, NFTA_SET_KEY_LEN)
    ? `key length ${be32(attributes, NFTA_SET_KEY_LEN)} for ${typeText(key)}`
    : interval && key.length === 1
    ? "a single-field interval set"
    : map && data === undefined
    ? `data type ${dataType}`
    : Array.isArray(data) && dataLength(data) !== be32(attributes, NFTA_SET_DATA_LEN)
    ? `data length ${be32(attributes, NFTA_SET_DATA_LEN)} for ${typeText(data)}`
    : undefined
  return {
    table: attrString(attributes, NFTA_SET_TABLE),
    name: attrString(attributes, NFTA_SET_NAME) ?? "",
    key: key ?? [],
    data,
    interval,
    anonymous: (flags & NFT_SET_ANONYMOUS) !== 0,
    unsupported
  }
}

/**
 * Set definitions by socket, then by `family table set`. A netfilter socket is opened in
 * its namespace and holds it: while the socket is cached, its namespace cannot be replaced
 * by another under the same identity, so definitions cached with it are that namespace's.
 * A table's name includes a hash of its skeleton, so a set's definition does not change
 * under the same name; entries are dropped when the kernel says a set or table is gone and
 * when tscni creates or deletes the table.
 */
const definitions = new WeakMap<RouteSocket, Map<string, SetDefinition>>()
const CACHE_LIMIT = 1024

const cacheOf = (socket: RouteSocket): Map<string, SetDefinition> => {
  let cache = definitions.get(socket)
  if (cache === undefined || cache.size > CACHE_LIMIT) {
    cache = new Map()
    definitions.set(socket, cache)
  }
  return cache
}

const cacheKey = (table: NftTableRef, set: string): string => `${table.family} ${table.name} ${set}`

/** Forgets the cached definitions of a table's sets (it is being created or deleted). */
export const forgetTable = (netns: string, table: NftTableRef): void => {
  let socket: RouteSocket
  try {
    socket = netfilterSocket(netns)
  } catch {
    return // no namespace: nothing cached for it either
  }
  const cache = definitions.get(socket)
  for (const key of cache?.keys() ?? []) if (key.startsWith(`${table.family} ${table.name} `)) cache?.delete(key)
}

/** Whether an operation asks the kernel for every definition (`fresh`), and whether it took one from the cache. */
interface Lookup {
  readonly fresh: boolean
  cached: boolean
}

/**
 * One set's definition: from the cache (unless `lookup.fresh`), or NFT_MSG_GETSET for that
 * set (NotFound when it or its table is missing).
 */
const setDefinition = (socket: RouteSocket, operation: string, table: NftTableRef, set: string, lookup: Lookup): SetDefinition => {
  const cache = cacheOf(socket)
  const key = cacheKey(table, set)
  const cached = cache.get(key)
  if (cached !== undefined && !lookup.fresh) {
    lookup.cached = true
    return cached
  }
  cache.delete(key)
  const request = new AttributeWriter().string(NFTA_SET_TABLE, table.name).string(NFTA_SET_NAME, set).finish()
  const replies = socket.request(operation, type(NFT_MSG_GETSET), 0, nfgenmsg(table.family), request, `${where(table)} set ${set}`)
  const reply = replies.find((message) => message.type === type(NFT_MSG_NEWSET))
  if (reply === undefined) {
    throw new KernelCallFailed(new BackendError({ operation, reason: "Unknown", message: `${operation}: ${where(table)} set ${set}: no definition in the kernel's answer` }))
  }
  const definition = parseSet(reply.payload)
  cache.set(key, definition)
  return definition
}

/**
 * Runs an operation with the cached definitions, and once more with fresh ones when it used
 * a cached one and failed the way a stale definition makes it fail: a key that is not of
 * the cached type, the kernel's EINVAL (a key of another length) or ENOENT (a set or table
 * that is gone). A failed write changed nothing (a batch is all or nothing), so running it
 * again is safe; a failure that stays is the answer.
 */
const withDefinitions = <A>(work: (lookup: Lookup) => A): A => {
  const lookup: Lookup = { fresh: false, cached: false }
  try {
    return work(lookup)
  } catch (error) {
    const stale = error instanceof KernelCallFailed && (error.error.reason === "Invalid" || error.error.errno === "ENOENT")
    if (!lookup.cached || !stale) throw error
    return work({ fresh: true, cached: false })
  }
}

// ---- elements ----

/** What an element carries besides its key: a map's value and the owner comment. */
interface ElementText {
  readonly key: string
  readonly value?: string
  readonly comment?: string
}

const VERDICT_CODES: Readonly<Record<string, number>> = { drop: 0, accept: 1, continue: -1, return: -5 }
const VERDICT_NAMES: Readonly<Record<number, string>> = { 0: "drop", 1: "accept", [-1]: "continue", [-5]: "return", [-3]: "jump", [-4]: "goto" }

/** libnftnl's udata: TLVs of a one-byte type and a one-byte length; the comment is nul-terminated. */
const commentUdata = (comment: string): Uint8Array => {
  const text = new TextEncoder().encode(comment)
  const udata = new Uint8Array(text.byteLength + 3)
  udata[0] = UDATA_COMMENT
  udata[1] = text.byteLength + 1
  udata.set(text, 2)
  return udata
}

const commentOf = (udata: Uint8Array | undefined): string => {
  for (let offset = 0; udata !== undefined && offset + 2 <= udata.byteLength;) {
    const length = udata[offset + 1]!
    if (udata[offset] === UDATA_COMMENT) {
      const value = udata.subarray(offset + 2, offset + 2 + length)
      const end = value.indexOf(0)
      return new TextDecoder().decode(end < 0 ? value : value.subarray(0, end))
    }
    offset += 2 + length
  }
  return ""
}

/** The key's bytes, or Invalid naming the set and its type. */
const encodeKey = (operation: string, table: NftTableRef, definition: SetDefinition, key: string): EncodedData => {
  const encoded = encodeData(definition.key, key, definition.interval)
  if (encoded === undefined) throw invalid(operation, `${where(table)} set ${definition.name}: '${key}' is not a key of type ${typeText(definition.key)}${definition.interval ? " (interval)" : ""}`)
  return encoded
}

/** NFTA_SET_ELEM_KEY (and KEY_END in an interval set) of an element. */
const writeKey = (writer: AttributeWriter, definition: SetDefinition, key: EncodedData): void => {
  writer.nested(NFTA_SET_ELEM_KEY, (data) => data.bytes(NFTA_DATA_VALUE, key.start))
  if (definition.interval) writer.nested(NFTA_SET_ELEM_KEY_END, (data) => data.bytes(NFTA_DATA_VALUE, key.end))
}

/** One NFTA_LIST_ELEM: key, key end, a map's value, the comment. */
const elementAttribute = (operation: string, table: NftTableRef, definition: SetDefinition, element: ElementText): Uint8Array => {
  const key = encodeKey(operation, table, definition, element.key)
  const what = `${where(table)} set ${definition.name} { ${element.key} }`
  if (element.value !== undefined && definition.data === undefined) throw invalid(operation, `${what}: ${definition.name} is a set, it takes no value`)
  return new AttributeWriter().nested(NFTA_LIST_ELEM, (writer) => {
    writeKey(writer, definition, key)
    if (element.value !== undefined && definition.data === "verdict") {
      const verdict = /^(accept|drop|continue|return)$|^(jump|goto) ([A-Za-z][A-Za-z0-9_-]{0,63})$/.exec(element.value)
      if (verdict === null) throw invalid(operation, `${what}: '${element.value}' is not a verdict`)
      const code = verdict[1] !== undefined ? VERDICT_CODES[verdict[1]]! : verdict[2] === "jump" ? -3 : -4
      writer.nested(NFTA_SET_ELEM_DATA, (data) =>
        data.nested(NFTA_DATA_VERDICT, (inner) => {
          inner.bytes(NFTA_VERDICT_CODE, be32Bytes(code))
          if (verdict[3] !== undefined) inner.string(NFTA_VERDICT_CHAIN, verdict[3])
        }))
    } else if (element.value !== undefined && definition.data !== undefined && definition.data !== "verdict") {
      const value = encodeData(definition.data, element.value, false)
      if (value === undefined) throw invalid(operation, `${what}: '${element.value}' is not a value of type ${typeText(definition.data)}`)
      writer.nested(NFTA_SET_ELEM_DATA, (data) => data.bytes(NFTA_DATA_VALUE, value.start))
    }
    if (element.comment !== undefined) writer.bytes(NFTA_SET_ELEM_USERDATA, commentUdata(element.comment))
  }).finish()
}

/** An element as the kernel holds it: its key's bytes and its text; undefined when this code cannot print it. */
interface ReadElement {
  readonly start: Uint8Array
  readonly end: Uint8Array
  readonly key: string
  readonly value?: string
  readonly comment: string
}

const dataValue = (nested: Uint8Array | undefined): Uint8Array | undefined =>
  nested === undefined ? undefined : decodeAttributes(nested).get(NFTA_DATA_VALUE)

const verdictText = (nested: Uint8Array | undefined): string | undefined => {
  const verdict = nested === undefined ? undefined : decodeAttributes(nested).get(NFTA_DATA_VERDICT)
  if (verdict === undefined) return undefined
  const attributes = decodeAttributes(verdict)
  const code = be32(attributes, NFTA_VERDICT_CODE)
  const name = code === undefined ? undefined : VERDICT_NAMES[code | 0]
  if (name === "jump" || name === "goto") {
    const chain = attrString(attributes, NFTA_VERDICT_CHAIN)
    return chain === undefined ? undefined : `${name} ${chain}`
  }
  return name
}

/** One NFTA_LIST_ELEM's content; undefined when it cannot be printed here (the caller asks libnftables). */
const readElement = (definition: SetDefinition, data: Uint8Array): ReadElement | undefined => {
  const attributes = decodeAttributes(data)
  const flags = be32(attributes, NFTA_SET_ELEM_FLAGS) ?? 0
  if ((flags & (NFT_SET_ELEM_INTERVAL_END | NFT_SET_ELEM_CATCHALL)) !== 0) return undefined
  const start = dataValue(attributes.get(NFTA_SET_ELEM_KEY))
  if (start === undefined) return undefined
  const end = dataValue(attributes.get(NFTA_SET_ELEM_KEY_END)) ?? start
  const key = decodeData(definition.key, start, end)
  if (key === undefined) return undefined
  let value: string | undefined
  if (definition.data === "verdict") value = verdictText(attributes.get(NFTA_SET_ELEM_DATA))
  else if (definition.data !== undefined) {
    const bytes = dataValue(attributes.get(NFTA_SET_ELEM_DATA))
    value = bytes === undefined ? undefined : decodeData(definition.data, bytes)
  }
  if (definition.data !== undefined && value === undefined) return undefined
  return { start, end, key, ...(value !== undefined ? { value } : {}), comment: commentOf(attributes.get(NFTA_SET_ELEM_USERDATA)) }
}

/** The NFTA_LIST_ELEM contents of an NFT_MSG_NEWSETELEM message. */
const elementAttributes = (payload: Uint8Array): Array<Uint8Array> =>
  decodeAttributeList(decodeAttributes(payload.subarray(NFGENMSG_LENGTH)).get(NFTA_SET_ELEM_LIST_ELEMENTS) ?? new Uint8Array(0))
    .filter((attribute) => attribute.type === NFTA_LIST_ELEM)
    .map((attribute) => attribute.data)

const sameBytes = (a: Uint8Array, b: Uint8Array): boolean => a.byteLength === b.byteLength && a.every((byte, i) => byte === b[i])

const compareBytes = (a: Uint8Array, b: Uint8Array): number => {
  for (let i = 0; i < Math.min(a.byteLength, b.byteLength); i++) if (a[i] !== b[i]) return a[i]! - b[i]!
  return a.byteLength - b.byteLength
}

/** The sets the elements name, in the order they first appear, each with its elements. */
const bySet = <E extends NftElementKey>(elements: ReadonlyArray<E>): Map<string, Array<E>> => {
  const groups = new Map<string, Array<E>>()
  for (const element of elements) groups.set(element.set, [...(groups.get(element.set) ?? []), element])
  return groups
}

/** One batch message per set (more for a set with many elements), with where each element's attribute starts. */
interface SetMessage {
  readonly message: BatchMessage
  readonly set: string
  readonly elements: ReadonlyArray<{ readonly offset: number; readonly key: string }>
}

const setMessages = (
  messageType: number,
  flags: number,
  table: NftTableRef,
  set: string,
  elements: ReadonlyArray<{ readonly attribute: Uint8Array; readonly key: string }>
): Array<SetMessage> => {
  const names = new AttributeWriter().string(NFTA_SET_ELEM_LIST_TABLE, table.name).string(NFTA_SET_ELEM_LIST_SET, set).finish()
  // the element list attribute's content starts after the headers, the names and its own 4-byte header
  const first = NLMSG_HDRLEN + NFGENMSG_LENGTH + names.byteLength + 4
  const messages: Array<SetMessage> = []
  for (let i = 0; i < elements.length;) {
    const chunk: Array<{ readonly attribute: Uint8Array; readonly key: string }> = []
    let size = 0
    for (; i < elements.length && (chunk.length === 0 || size + elements[i]!.attribute.byteLength <= MESSAGE_BUDGET); i++) {
      chunk.push(elements[i]!)
      size += elements[i]!.attribute.byteLength
    }
    const list = new Uint8Array(size)
    const offsets: Array<{ readonly offset: number; readonly key: string }> = []
    let at = 0
    for (const element of chunk) {
      list.set(element.attribute, at)
      offsets.push({ offset: first + at, key: element.key })
      at += element.attribute.byteLength
    }
    const attributes = new Uint8Array(names.byteLength + 4 + list.byteLength)
    attributes.set(names)
    attributes.set(new AttributeWriter().nestedBytes(NFTA_SET_ELEM_LIST_ELEMENTS, list).finish(), names.byteLength)
    messages.push({ message: { type: type(messageType), flags, header: nfgenmsg(table.family), attributes }, set, elements: offsets })
  }
  return messages
}

/** Throws the batch's first failure, naming the element the kernel refused when it said which. */
const throwFailure = (operation: string, table: NftTableRef, messages: ReadonlyArray<SetMessage>, failures: ReadonlyArray<BatchFailure>): void => {
  const failure = failures.find((f) => f.index >= 0) ?? failures[0]
  if (failure === undefined) return
  const message = messages[failure.index]
  const element = message === undefined || failure.offset === undefined
    ? undefined
    : message.elements.findLast((candidate) => candidate.offset <= failure.offset!)
  const subject = message === undefined ? where(table) : `${where(table)} set ${message.set}${element === undefined ? "" : ` { ${element.key} }`}`
  throw new KernelCallFailed(kernelError(operation, failure.errno, failure.text === undefined ? subject : `${subject}: ${failure.text}`))
}

/** Writes one batch of element messages: one transaction. */
const writeBatch = (socket: RouteSocket, operation: string, table: NftTableRef, messages: ReadonlyArray<SetMessage>): void =>
  throwFailure(operation, table, messages, socket.batch(operation, NFNL_SUBSYS_NFTABLES, messages.map((m) => m.message)))

/** The definitions of the sets named, or undefined when one of them is left to libnftables. */
const definitionsOf = (socket: RouteSocket, operation: string, table: NftTableRef, sets: Iterable<string>, lookup: Lookup): Map<string, SetDefinition> | undefined => {
  const found = new Map<string, SetDefinition>()
  for (const set of sets) found.set(set, setDefinition(socket, operation, table, set, lookup))
  return [...found.values()].some((definition) => definition.unsupported !== undefined) ? undefined : found
}

/**
 * Adds elements, failing if one of their keys is there (NLM_F_CREATE | NLM_F_EXCL): one
 * transaction. Returns false (nothing sent) when a set is left to libnftables.
 */
export const addElements = (netns: string, operation: string, table: NftTableRef, elements: ReadonlyArray<NftElement>): boolean => {
  const socket = netfilterSocket(netns)
  const groups = bySet(elements)
  return withDefinitions((lookup) => {
    const found = definitionsOf(socket, operation, table, groups.keys(), lookup)
    if (found === undefined) return false
    const messages = [...groups].flatMap(([set, members]) =>
      setMessages(NFT_MSG_NEWSETELEM, NLM_F_CREATE | NLM_F_EXCL, table, set, members.map((element) => ({
        attribute: elementAttribute(operation, table, found.get(set)!, element),
        key: element.key
      })))
    )
    writeBatch(socket, operation, table, messages)
    return true
  })
}

/**
 * Deletes elements by key, all or none (NotFound when one is missing): one transaction.
 * False (nothing sent) when a set is left to libnftables.
 */
export const deleteElements = (netns: string, operation: string, table: NftTableRef, keys: ReadonlyArray<NftElementKey>): boolean => {
  const socket = netfilterSocket(netns)
  const groups = bySet(keys)
  return withDefinitions((lookup) => {
    const found = definitionsOf(socket, operation, table, groups.keys(), lookup)
    if (found === undefined) return false
    // the kernel deletes the element of an interval set whose key starts where the one
    // asked for does, whatever its end: each key of one is looked up first, exactly
    const confirmed = new Set<string>()
    for (const [set, members] of groups) {
      const definition = found.get(set)!
      if (!definition.interval) continue
      for (const { key } of members) {
        if (lookUp(socket, operation, table, definition, { set, key }, encodeKey(operation, table, definition, key), confirmed) === "missing") {
          throw new KernelCallFailed(kernelError(operation, ENOENT, `${where(table)} set ${set} { ${key} }`))
        }
      }
    }
    const messages = [...groups].flatMap(([set, members]) =>
      setMessages(NFT_MSG_DELSETELEM, 0, table, set, members.map(({ key }) => {
        const definition = found.get(set)!
        const attribute = new AttributeWriter().nested(NFTA_LIST_ELEM, (writer) => writeKey(writer, definition, encodeKey(operation, table, definition, key))).finish()
        return { attribute, key }
      }))
    )
    writeBatch(socket, operation, table, messages)
    return true
  })
}

/**
 * The elements among `keys` that exist, one NFT_MSG_GETSETELEM each (the kernel stops a get
 * of several at the first missing one), keys spelled as the caller did. An element is the one
 * asked for only when its key and key end are those asked for (in an interval set the kernel
 * answers with an element whose range holds the key). A missing table or set is NotFound.
 * `viaLibnftables` looks up a key of a set left to libnftables.
 */
export const getElements = (
  netns: string,
  operation: string,
  table: NftTableRef,
  keys: ReadonlyArray<NftElementKey>,
  viaLibnftables: (key: NftElementKey, set: SetDefinition) => NftElement | undefined
): Array<NftElement> => {
  const socket = netfilterSocket(netns)
  return withDefinitions((lookup) => {
    const found: Array<NftElement> = []
    const confirmed = new Set<string>()
    for (const wanted of keys) {
      const definition = setDefinition(socket, operation, table, wanted.set, lookup)
      const element = definition.unsupported !== undefined
        ? "unprintable"
        : lookUp(socket, operation, table, definition, wanted, encodeKey(operation, table, definition, wanted.key), confirmed)
      if (element === "unprintable") {
        const printed = viaLibnftables(wanted, definition)
        if (printed !== undefined) found.push(printed)
      } else if (element !== "missing") {
        found.push({ set: wanted.set, key: wanted.key, ...(element.value !== undefined ? { value: element.value } : {}), comment: element.comment })
      }
    }
    return found
  })
}

/**
 * Asks the kernel for the element with exactly this key (NFT_MSG_GETSETELEM): the element,
 * "missing", or "unprintable" (there, but not printable here). In an interval set the kernel
 * answers with an element whose range holds the key's start: it is this key's only when its
 * key and key end are the ones asked for. The kernel says ENOENT for a missing element and
 * for a missing set or table alike: the first time per call a set's key is missing, the
 * set's definition is asked for again, which is NotFound when the set or table is gone.
 */
const lookUp = (
  socket: RouteSocket,
  operation: string,
  table: NftTableRef,
  definition: SetDefinition,
  wanted: NftElementKey,
  key: EncodedData,
  confirmed: Set<string>
): ReadElement | "missing" | "unprintable" => {
  const request = new AttributeWriter()
    .string(NFTA_SET_ELEM_LIST_TABLE, table.name)
    .string(NFTA_SET_ELEM_LIST_SET, wanted.set)
    .nested(NFTA_SET_ELEM_LIST_ELEMENTS, (list) => list.nested(NFTA_LIST_ELEM, (writer) => writeKey(writer, definition, key)))
    .finish()
  let replies
  try {
    replies = socket.request(operation, type(NFT_MSG_GETSETELEM), 0, nfgenmsg(table.family), request, `${where(table)} set ${wanted.set} { ${wanted.key} }`)
  } catch (error) {
    if (!isErrno(error, "ENOENT")) throw error
    if (!confirmed.has(wanted.set)) {
      setDefinition(socket, operation, table, wanted.set, { fresh: true, cached: false })
      confirmed.add(wanted.set)
    }
    return "missing"
  }
  const listed = replies.filter((message) => message.type === type(NFT_MSG_NEWSETELEM)).flatMap((message) => elementAttributes(message.payload))
  if (listed.length === 0) return "missing"
  const attributes = decodeAttributes(listed[0]!)
  const start = dataValue(attributes.get(NFTA_SET_ELEM_KEY))
  const end = dataValue(attributes.get(NFTA_SET_ELEM_KEY_END)) ?? start
  if (start === undefined || end === undefined || !sameBytes(start, key.start) || !sameBytes(end, key.end)) return "missing"
  return readElement(definition, listed[0]!) ?? "unprintable"
}

/**
 * Every element of one table: its sets (one NFT_MSG_GETSET dump the kernel filters to that
 * table; NotFound when it is missing), then one NFT_MSG_GETSETELEM dump per named set.
 * Elements come set by set, each set's in key order. `viaLibnftables` lists a set left to
 * libnftables (or holding an element this code cannot print).
 */
export const listElements = (
  netns: string,
  operation: string,
  table: NftTableRef,
  viaLibnftables: (set: SetDefinition) => Array<NftElement>
): Array<NftElement> => {
  const socket = netfilterSocket(netns)
  const request = new AttributeWriter().string(NFTA_SET_TABLE, table.name).finish()
  const sets = socket
    .dump(operation, type(NFT_MSG_GETSET), nfgenmsg(table.family), request)
    .filter((message) => message.type === type(NFT_MSG_NEWSET))
    .map((message) => parseSet(message.payload))
    .filter((set) => set.table === table.name && !set.anonymous)
  const cache = cacheOf(socket)
  const elements: Array<NftElement> = []
  for (const { table: _table, ...definition } of sets) {
    cache.set(cacheKey(table, definition.name), definition)
    if (definition.unsupported !== undefined) {
      elements.push(...viaLibnftables(definition))
      continue
    }
    const names = new AttributeWriter().string(NFTA_SET_ELEM_LIST_TABLE, table.name).string(NFTA_SET_ELEM_LIST_SET, definition.name).finish()
    const read: Array<ReadElement | undefined> = socket
      .dump(operation, type(NFT_MSG_GETSETELEM), nfgenmsg(table.family), names)
      .filter((message) => message.type === type(NFT_MSG_NEWSETELEM))
      .flatMap((message) => elementAttributes(message.payload))
      .map((element) => readElement(definition, element))
    if (read.some((element) => element === undefined)) {
      elements.push(...viaLibnftables(definition))
      continue
    }
    const printable = read as Array<ReadElement>
    printable.sort((a, b) => compareBytes(a.start, b.start) || compareBytes(a.end, b.end))
    for (const { key, value, comment } of printable) elements.push({ set: definition.name, key, ...(value !== undefined ? { value } : {}), comment })
  }
  return elements
}
