/**
 * tscni-net's config and the delegate it renders. The conflist entry names where the node
 * file is and where rendered delegates are kept; the node file (written by `tscni agent`)
 * says which subnet(s) the node leased and the pods' MTU; `delegate` overrides any key of
 * the rendered config (hairpinMode, another bridge name, `"type": "ptp"`, …).
 */
import { Effect, Schema } from "effect"
import { DEFAULT_NODE_FILE, type NodeFile } from "@tscni/cluster/nodeFile"
import { type CniError, decodePluginKeys, invalidConfig } from "@tscni/spec"
import type { PluginRequest } from "@tscni/skel"
import { validatePluginType } from "@tscni/steps"

/** Where rendered delegates are kept unless `dataDir` says otherwise (one file per attachment). */
export const DEFAULT_DATA_DIR = "/var/lib/cni/tscni-net"

const Keys = Schema.Struct({
  nodeFile: Schema.optionalKey(Schema.String),
  dataDir: Schema.optionalKey(Schema.String),
  delegate: Schema.optionalKey(Schema.Record(Schema.String, Schema.Unknown))
})

export interface TscniNetSettings {
  readonly network: string
  readonly nodeFile: string
  readonly dataDir: string
  /** the config's `delegate` overrides, as given */
  readonly overrides: Readonly<Record<string, unknown>>
  /** the delegate's plugin type (`delegate.type`, default bridge) */
  readonly delegateType: string
}

/** Decodes and checks the config: every problem is found here, before anything happens. */
export const tscniNetSettings = (request: PluginRequest): Effect.Effect<TscniNetSettings, CniError> =>
  Effect.gen(function*() {
    const keys = yield* decodePluginKeys(Keys)(request.raw)
    for (const [field, value] of [["nodeFile", keys.nodeFile], ["dataDir", keys.dataDir]] as const) {
      if (value !== undefined && !value.startsWith("/")) return yield* invalidConfig(field, `'${value}' is not an absolute path`)
    }
    const overrides = keys.delegate ?? {}
    const type = overrides.type ?? "bridge"
    if (typeof type !== "string") return yield* invalidConfig("delegate.type", "must be a plugin name")
    yield* validatePluginType(type).pipe(Effect.mapError(() => invalidConfig("delegate.type", `not a plugin name: ${JSON.stringify(type)}`)))
    if (type === "tscni-net") return yield* invalidConfig("delegate.type", "tscni-net cannot delegate to itself")
    for (const key of ["cniVersion", "name", "prevResult"]) {
      if (key in overrides) return yield* invalidConfig(`delegate.${key}`, "is set by tscni-net (from the network config), not by delegate")
    }
    return {
      network: request.conf.name,
      nodeFile: keys.nodeFile ?? DEFAULT_NODE_FILE,
      dataDir: keys.dataDir ?? DEFAULT_DATA_DIR,
      overrides,
      delegateType: type
    }
  })

/** The keys a rendered delegate takes over from the network config as the runtime sent it. */
const PASSED_ON = ["runtimeConfig", "args", "dns"] as const

/**
 * The delegate's config for this node: by default the bridge plugin as the pods' gateway
 * (isGateway, isDefaultGateway: a pod's traffic leaves through its node, which routes it to
 * the peers or masquerades it) and no masquerade of its own (the agent's keeps pod-to-pod
 * traffic un-NATed), host-local on the node's subnet(s), the node file's MTU; for another
 * delegate (ptp) a default route per family from IPAM instead. `delegate` overrides last.
 */
export const renderDelegate = (request: PluginRequest, settings: TscniNetSettings, node: NodeFile): Record<string, unknown> => {
  const bridge = settings.delegateType === "bridge"
  const defaults: Record<string, unknown> = {
    cniVersion: request.conf.cniVersion,
    name: request.conf.name,
    type: settings.delegateType,
    ...(bridge ? { isGateway: true, isDefaultGateway: true } : {}),
    ipMasq: false,
    mtu: node.mtu,
    ipam: {
      type: "host-local",
      ranges: node.subnets.map((subnet) => [{ subnet }]),
      ...(bridge ? {} : { routes: node.subnets.map((subnet) => ({ dst: subnet.includes(":") ? "::/0" : "0.0.0.0/0" })) })
    }
  }
  const passed = Object.fromEntries(PASSED_ON.flatMap((key) => (request.raw[key] === undefined ? [] : [[key, request.raw[key]]])))
  const ipamOverride = settings.overrides.ipam
  return {
    ...defaults,
    ...passed,
    ...settings.overrides,
    // an ipam override is merged key by key into the rendered IPAM (dataDir, routes; ranges too, if it names them)
    ...(typeof ipamOverride === "object" && ipamOverride !== null ? { ipam: { ...(defaults.ipam as object), ...ipamOverride } } : {})
  }
}
