export type { BuilderSettings, ConnectorSettings, SignerSettings, SparkConfig, UploaderSettings } from './spark-config.js';
export {
  DEFAULT_CONFIG_FILE,
  DEFAULT_CURVE_KEYS_DIR,
  DEFAULT_METRICS_LISTEN,
  DEFAULT_REDIS_MAX_MEMORY,
  DEFAULT_REDIS_URL,
  DEFAULT_SIGNER_KEY_CREDENTIAL,
  SIGNER_KEY_CREDSTORE,
  DEFAULT_WORKSPACE_ROOT,
} from './defaults.js';
export { isLogLevel, LOG_LEVELS, type LogLevel } from './log-level.js';
export { ConfigError, formatProblem, type ConfigProblem } from './config-error.js';
export { systemEnvironment, type ConfigEnvironment } from './config-environment.js';
export { parseConfig, type LoadedConfig } from './parse-config.js';
export { loadConfig, loadConfigOrExitCode } from './load-config.js';
export { defaultArchitectures, machineIdOf, readHostname, uuidV5 } from './machine.js';
export { nearestName } from './nearest-name.js';
export { isCredentialName } from './credential-name.js';
export * from './sysexits.js';
export * from './config-changes.js';
export { nodeFlags, type NodeProgram } from './node-flags.js';
