/**
 * `cni policy explain`: whether a connection from SRC to DST on PORT/PROTO is allowed, and
 * which policies and rules decide it, answered from the compiled model the agent enforces
 * (model.ts) — no packet needed. Egress is judged at the source pod, ingress at the
 * destination pod; both must allow. Replies of an allowed connection always pass.
 */
import type { Pod, Protocol } from "./objects.ts"
import { type CompiledPolicy, type Direction, type Model, peerMatches, podKey, portMatches } from "./model.ts"

/** One end: a pod (by `namespace/name`) with its address, or a bare address outside the pods. */
export interface Endpoint {
  readonly ip: string
  readonly pod: Pod | undefined
}

export interface DirectionVerdict {
  readonly direction: Direction
  readonly allowed: boolean
  /** why, in a sentence */
  readonly reason: string
  /** the policies of this direction selecting the pod (empty: unrestricted) */
  readonly selectedBy: ReadonlyArray<string>
  /** the rules that admit the connection, as `namespace/policy ingress[i]` */
  readonly allowedBy: ReadonlyArray<string>
}

export interface Verdict {
  readonly allowed: boolean
  readonly egress: DirectionVerdict
  readonly ingress: DirectionVerdict
}

const judge = (direction: Direction, model: Model, self: Endpoint, other: Endpoint, destination: Endpoint, protocol: Protocol | undefined, port: number | undefined): DirectionVerdict => {
  const side = direction === "egress" ? "source" : "destination"
  if (self.pod === undefined) return { direction, allowed: true, reason: `the ${side} ${self.ip} is not a pod: nothing restricts its ${direction}`, selectedBy: [], allowedBy: [] }
  const key = podKey(self.pod)
  const policies: ReadonlyArray<CompiledPolicy> = model.selecting[direction].get(key) ?? []
  if (policies.length === 0) return { direction, allowed: true, reason: `no ${direction} policy selects ${key}: its ${direction} is unrestricted`, selectedBy: [], allowedBy: [] }
  const allowedBy: Array<string> = []
  for (const policy of policies) {
    for (const rule of policy[direction] ?? []) {
      if (peerMatches(rule, other.ip) && portMatches(rule, destination.pod, protocol, port)) allowedBy.push(`${policy.key} ${direction}[${rule.index}]`)
    }
  }
  const selectedBy = policies.map((p) => p.key)
  return allowedBy.length > 0
    ? { direction, allowed: true, reason: `allowed by ${allowedBy.join(", ")}`, selectedBy, allowedBy }
    : { direction, allowed: false, reason: `${key} is isolated for ${direction} by ${selectedBy.join(", ")} and no rule of theirs admits this`, selectedBy, allowedBy }
}

/** The verdict for a new connection from `source` to `destination` (protocol undefined: neither TCP, UDP nor SCTP, e.g. ICMP). */
export const explain = (model: Model, source: Endpoint, destination: Endpoint, protocol: Protocol | undefined, port: number | undefined): Verdict => {
  // a pod talking to itself never leaves it
  if (source.pod !== undefined && destination.pod !== undefined && podKey(source.pod) === podKey(destination.pod)) {
    const self = (direction: Direction): DirectionVerdict => ({ direction, allowed: true, reason: "a pod's traffic to itself never leaves it", selectedBy: [], allowedBy: [] })
    return { allowed: true, egress: self("egress"), ingress: self("ingress") }
  }
  const egress = judge("egress", model, source, destination, destination, protocol, port)
  const ingress = judge("ingress", model, destination, source, destination, protocol, port)
  return { allowed: egress.allowed && ingress.allowed, egress, ingress }
}

/** The pod with address `ip`, if any. */
export const podWithIp = (model: Model, ip: string): Pod | undefined => [...model.world.pods.values()].find((pod) => pod.ips.includes(ip))
