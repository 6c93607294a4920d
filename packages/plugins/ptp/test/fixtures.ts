/** The ptp config the mock-kernel tests start from (fake IPAM, masquerade and an MTU on). */
export const CONF = {
  cniVersion: "1.0.0",
  name: "podnet",
  type: "ptp",
  ipMasq: true,
  mtu: 1400,
  ipam: { type: "fake-ipam" }
}
