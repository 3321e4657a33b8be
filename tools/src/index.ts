export { runSparkCli, type CliIo } from './cli/spark-cli.js';
