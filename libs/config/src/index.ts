export * from './spark-config.js';
export { defaultArchitectures, machineIdOf, readHostname, uuidV5 } from './machine.js';
export { nearestName } from './nearest-name.js';
export * from './sysexits.js';
export * from './config-changes.js';
export { nodeFlags, type NodeProgram } from './node-flags.js';
