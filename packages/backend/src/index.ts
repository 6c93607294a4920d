export * from "./Backend.ts"
export * from "./errors.ts"
export * from "./model.ts"
export * from "./iptables.ts"
