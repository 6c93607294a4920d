const sha256 = (text: string): string => new Bun.CryptoHasher("sha256").update(text).digest("hex")

/** Owner comment of a pod's mapping rules: `pm:<network hash>:<attachment key>` (see bridge's names.ts). */
export const networkTag = (network: string): string => `pm:${sha256(network).slice(0, 8)}`
export const attachmentKey = (containerId: string, ifname: string): string => sha256(`${containerId}/${ifname}`).slice(0, 12)
export const ruleOwner = (network: string, containerId: string, ifname: string): string =>
  `${networkTag(network)}:${attachmentKey(containerId, ifname)}`
