/**
 * What nft would refuse in a rule tscni asks for, decided before anything is sent: the
 * Linux backend answers Invalid with a reason (rather than nft's "No such file or
 * directory", e.g. for a nat chain in the bridge family), and the mock answers the same,
 * so neither accepts what the other refuses.
 */
import { FILTER_FAMILIES, type FilterRule } from "./model.ts"
import { RULE_COMMENT } from "./iptables.ts"

const NAME = /^[A-Za-z][A-Za-z0-9_-]{0,63}$/
/** an interface name nft can take quoted: no quotes, slashes, whitespace or braces */
const DEVICE = /^[^\s"/{};\\]{1,15}$/
const IP_HOOKS: ReadonlySet<string> = new Set(["prerouting", "input", "forward", "output", "postrouting"])

/**
 * Why nft would refuse the rule's base chain, or undefined: `bridge` and `netdev` chains
 * are `type filter` only; `netdev` hooks are ingress/egress on a device; the IP families
 * (and bridge) use the five IP hooks (inet may also hook a device's ingress). The device
 * need not exist yet: recent kernels (6.18 here) accept a hook on a missing device.
 */
const baseChainProblem = (rule: FilterRule): string | undefined => {
  const base = rule.baseChain
  if (base === undefined) return undefined
  if (!Number.isInteger(base.priority)) return `bad priority ${base.priority}`
  if (base.device !== undefined && !DEVICE.test(base.device)) return `bad device name '${base.device}'`
  if ((rule.family === "bridge" || rule.family === "netdev") && base.type !== "filter") {
    return `a ${rule.family} chain can only be of type filter`
  }
  if (rule.family === "netdev") {
    if (base.hook !== "ingress" && base.hook !== "egress") return `a netdev chain hooks ingress or egress, not ${base.hook}`
    return base.device === undefined ? "a netdev base chain needs a device" : undefined
  }
  if (rule.family === "inet" && base.hook === "ingress") {
    return base.device === undefined ? "an inet ingress chain needs a device" : undefined
  }
  if (!IP_HOOKS.has(base.hook)) return `a ${rule.family} chain cannot hook ${base.hook}`
  return base.device !== undefined ? `a ${rule.family} ${base.hook} chain takes no device` : undefined
}

/** Why a rule cannot be added (names, comment, one statement, family, base chain), or undefined. */
export const filterRuleProblem = (rule: FilterRule): string | undefined => {
  if (!NAME.test(rule.table) || !NAME.test(rule.chain)) return `bad table or chain name '${rule.table}'/'${rule.chain}'`
  if (!RULE_COMMENT.test(rule.comment)) return `bad comment '${rule.comment}'`
  if (rule.rule.trim() === "" || /[;\n]/.test(rule.rule)) return `a rule must be one statement: '${rule.rule}'`
  if (!FILTER_FAMILIES.has(rule.family)) return `unknown family '${rule.family}'`
  return baseChainProblem(rule)
}
