import { Effect, Schema } from "effect"
import { Backend, type BackendError, HOST_NETNS, sysctlKey } from "@tscni/backend"
import { ensure, makeStep, Pipeline } from "@tscni/engine"
import { ignoreNotFound } from "./internal.ts"

/**
 * A sysctl to write in a namespace. `restoreOnUndo` (default true) is false for host-wide
 * switches such as `net.ipv4.ip_forward`, which other pods rely on after this one is gone.
 */
export interface SetSysctlInput {
  readonly netns: string
  readonly key: string
  readonly value: string
  readonly restoreOnUndo?: boolean
}

/** The value written and the one it replaced, so undo can put it back. */
export const SetSysctlHandle = Schema.Struct({
  netns: Schema.String,
  key: Schema.String,
  value: Schema.String,
  previous: Schema.String,
  restoreOnUndo: Schema.Boolean
})
export type SetSysctlHandle = typeof SetSysctlHandle.Type

const STEP = "setSysctl"

const normalize = (value: string): string => value.trim().split(/\s+/).join(" ")

/** Writes a sysctl, remembering the previous value; undo writes it back when asked to. */
export const setSysctl = makeStep<SetSysctlInput, SetSysctlHandle, BackendError, Backend>({
  name: STEP,
  handle: SetSysctlHandle,
  apply: (input) =>
    Effect.gen(function*() {
      const backend = yield* Backend
      const previous = yield* backend.writeSysctl(input.netns, input.key, input.value)
      return {
        netns: input.netns,
        key: input.key,
        value: input.value,
        previous,
        restoreOnUndo: input.restoreOnUndo ?? true
      }
    }),
  undo: (handle) =>
    Effect.gen(function*() {
      if (!handle.restoreOnUndo) return
      const backend = yield* Backend
      yield* ignoreNotFound(backend.writeSysctl(handle.netns, handle.key, handle.previous))
    }),
  check: (handle) =>
    Effect.gen(function*() {
      const backend = yield* Backend
      const current = yield* ignoreNotFound(backend.readSysctl(handle.netns, handle.key))
      // multi-value sysctls (ip_local_port_range) read back tab-separated
      const same = current !== undefined && normalize(current) === normalize(handle.value)
      yield* ensure(STEP, same, () =>
        `${handle.key} in ${handle.netns} is ${current ?? "absent"}, expected ${handle.value}`)
    })
})

/**
 * A host-wide switch (forwarding, bridge-nf) as ADD sets it: on, and never put back, on
 * rollback as on DEL, as the reference plugins do: a concurrent first ADD of another pod, and
 * kube-proxy, rely on it from the moment it is on; putting back what one failed ADD found
 * would switch it off under those. Pipelines set these last, so every failure before them
 * leaves them untouched.
 */
export const hostSwitch = (key: string): SetSysctlInput & { readonly restoreOnUndo: false } => ({
  netns: HOST_NETNS,
  key,
  value: "1",
  restoreOnUndo: false
})

/** A host switch as CHECK verifies it (the value it had before ADD is not known, nor needed). */
export const hostSwitchHandle = (key: string): SetSysctlHandle => ({ ...hostSwitch(key), previous: "" })

/** The host's forwarding switch of each address family. */
export const FORWARDING = { 4: "net.ipv4.ip_forward", 6: "net.ipv6.conf.all.forwarding" } as const

/** A pod interface's arp_notify switch. */
export const arpNotifyKey = (ifname: string): string => sysctlKey("net", "ipv4", "conf", ifname, "arp_notify")

/**
 * arp_notify on the pod's interface once IPAM configured it: a pod given an address another
 * pod had announces its MAC (gratuitous ARP on up and on address changes), so neighbours
 * stop sending to the old one. The input when the pod has addresses, else skip.
 */
export const arpNotifyInput = (netns: string, ifname: string, addresses: ReadonlyArray<string>): SetSysctlInput | Pipeline.Skip =>
  addresses.length > 0 ? { netns, key: arpNotifyKey(ifname), value: "1" } : Pipeline.skip

/** arp_notify as CHECK verifies it (it goes with the pod's interface: DEL has nothing to undo). */
export const locateArpNotify = (netns: string, ifname: string, addresses: ReadonlyArray<string>, purpose: "del" | "check"): SetSysctlHandle | Pipeline.Skip =>
  purpose === "check" && addresses.length > 0 ? { netns, key: arpNotifyKey(ifname), value: "1", previous: "0", restoreOnUndo: true } : Pipeline.skip
