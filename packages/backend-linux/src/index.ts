export { layer, makeLinuxBackend } from "./LinuxBackend.ts"
export { inNetns, isNetns } from "./netns.ts"
