/** @tscni/spec: CNI spec versions, errors, config and result schemas shared by every tscni package. */
export { parseCniBool, type SplitCniArgs, splitCniArgs } from "./cniArgs.ts"
export { CallerEnvironment } from "./environment.ts"
export {
  SUPPORTED_VERSIONS,
  LATEST_VERSION,
  type Verb,
  VERBS,
  isVerb,
  compareVersions,
  isSupportedVersion,
  verbSupported,
  negotiateVersion,
  versionInfo
} from "./versions.ts"
export {
  ErrorCode,
  CniError,
  incompatibleVersion,
  unsupportedField,
  unknownContainer,
  invalidEnvironment,
  ioFailure,
  decodeFailure,
  invalidConfig,
  tryAgainLater,
  notAvailable,
  internalError,
  errorResult,
  describeSchemaError
} from "./errors.ts"
export {
  NetworkName,
  NetConf,
  NetConfList,
  decodeNetConf,
  decodePluginKeys,
  IntegerInRange,
  parseConfigJson,
  parseNetConf,
  decodeNetConfList,
  validAttachments
} from "./config.ts"
export {
  Interface,
  IpConfig,
  RouteEntry,
  Dns,
  Result,
  decodeResult,
  encodeResult,
  convertResult,
  inSandbox,
  podIpConfigs,
  hostInterfaceNames,
  attachmentInterface,
  attachmentResult
} from "./result.ts"
export { interfaceNameProblem, MAX_IFNAME_LENGTH } from "./ifname.ts"
export { eachWithGoFieldNames, withGoFieldNames, withRuntimeCapability } from "./goFields.ts"
