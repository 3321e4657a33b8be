export { runSparkCli, type CliIo } from './spark-cli.js';
export { superviseChildren, type ChildSpec, type Supervisor } from './supervisor/supervisor.js';
export { SERVICES, builderStopTimeoutMs, serviceCommands, type ServiceCommandOptions } from './supervisor/run-command.js';
export { writeRedisAcl, DEFAULT_ACL_FILE, type RedisAclOptions, type RedisAclResult } from './redis-acl.js';
