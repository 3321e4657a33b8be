export { runSparkCli, type CliIo } from './spark-cli.js';
export { superviseChildren, type ChildSpec, type Supervisor } from './supervisor/supervisor.js';
export { SERVICES, builderStopTimeoutMs, serviceCommands } from './supervisor/run-command.js';
