/** The bridge config the mock-kernel tests start from (fake IPAM, every host-side option on). */
export const CONF = {
  cniVersion: "1.0.0",
  name: "podnet",
  type: "bridge",
  bridge: "br-test",
  isGateway: true,
  isDefaultGateway: true,
  ipMasq: true,
  hairpinMode: true,
  ipam: { type: "fake-ipam" }
}
