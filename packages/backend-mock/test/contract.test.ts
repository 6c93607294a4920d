import { netnsThroughBackend, runBackendContract } from "@tscni/backend/contract"
import { layer, layerWith } from "../src/index.ts"

runBackendContract("MockBackend", () => layer, { ...netnsThroughBackend, bridgeVlans: "supported" })
// a kernel built without CONFIG_BRIDGE_VLAN_FILTERING, like the CI machine's
runBackendContract("MockBackend without bridge VLAN filtering", () => layerWith({ vlanFiltering: "unsupported" }), {
  ...netnsThroughBackend,
  bridgeVlans: "unsupported"
})
