export { closeNamespaceResources, layer, makeLinuxBackend, releaseNamespaceResources } from "./LinuxBackend.ts"
export { createNetns, deleteNetns, inNetns, isNetns, NETNS_RUN_DIR } from "./netns.ts"
