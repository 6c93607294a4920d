import { Effect, Schema } from "effect"
import { type CniError, decodePluginKeys, unsupportedField } from "@tscni/spec"
import type { PluginRequest } from "@tscni/skel"

/**
 * Who may open connections to the pod (see rules.ts for what each one installs):
 * - `open` (default): anyone;
 * - `same-bridge`: only what comes in through the pod's bridge, plus published ports;
 * - `isolated`: nobody but published ports (replies to the pod's own connections pass).
 */
export type IngressPolicy = "open" | "same-bridge" | "isolated"

/** The firewall plugin's own keys, as the reference firewall plugin reads them. */
const FirewallKeys = Schema.Struct({
  backend: Schema.optionalKey(Schema.Literals(["", "nftables", "iptables", "firewalld"])),
  ingressPolicy: Schema.optionalKey(Schema.Literals(["", "open", "same-bridge", "isolated"])),
  // iptables and firewalld knobs: accepted so that reference configs decode, unused here
  iptablesAdminChainName: Schema.optionalKey(Schema.String),
  firewalldZone: Schema.optionalKey(Schema.String)
})

/** Everything the firewall plugin decided from its config, before any side effect. */
export interface FirewallSettings {
  readonly network: string
  readonly ingressPolicy: IngressPolicy
}

/** Decodes and checks the config: only the nftables backend exists in tscni. */
export const firewallSettings = (request: PluginRequest): Effect.Effect<FirewallSettings, CniError> =>
  Effect.gen(function*() {
    const keys = yield* decodePluginKeys(FirewallKeys)(request.raw)
    if (keys.backend === "iptables" || keys.backend === "firewalld") return yield* unsupportedField("backend", keys.backend)
    const policy = keys.ingressPolicy === undefined || keys.ingressPolicy === "" ? "open" : keys.ingressPolicy
    return { network: request.conf.name, ingressPolicy: policy }
  })
