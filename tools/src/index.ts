export { runSparkCli, type CliIo } from './cli/spark-cli.js';
export * from './supervisor/supervisor.js';
