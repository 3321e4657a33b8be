import { parseArgs } from 'node:util';
import { DEFAULT_CONFIG_FILE, EXIT_CONFIG } from '@spark/config';
import { loadCliConfig } from './cli-config.js';
import { KEYTOOL_USAGE, runKeytool } from './keytool/keytool-cli.js';
import { RETRY_UPLOAD_USAGE, runRetryUpload } from './retry-upload.js';
import { CANCEL_USAGE, runCancel } from './cancel.js';
import { LOGS_USAGE, runLogs } from './logs.js';
import { dashboardCommand } from './dashboard/dashboard-command.js';
import { statusCommand } from './status/status-command.js';
import { runCommand } from './supervisor/run-command.js';

/** Where the CLI writes. */
export interface CliIo {
  stdout: NodeJS.WritableStream;
  stderr: NodeJS.WritableStream;
}

const USAGE = `usage: spark <command> [options]

commands:
  config check [--config FILE]   check spark.toml and print the effective config as JSON
                                 (exit 0 when valid, 2 with one message per problem)
  run [--config FILE]            run the four services under one supervisor (restarts
                                 crashed ones with backoff; SIGTERM stops all)
  status [--config FILE] [--redis [LABEL=]URL]... [--prefix P] [--json]
                                 queues, live builders, Lighthouse link, jobs in flight
  dashboard [--config FILE] [--redis [LABEL=]URL]... [--prefix P] [--bind ADDR]
            [--port N] [--read-write] [--token-file FILE]
                                 queue dashboard (bull-board), 127.0.0.1:3000 by default
${KEYTOOL_USAGE}
${RETRY_UPLOAD_USAGE}
${CANCEL_USAGE}
${LOGS_USAGE}

--config defaults to ${DEFAULT_CONFIG_FILE}.`;

/** Exit code for a command line we cannot understand. */
export const EXIT_USAGE = 64;

/** Runs the `spark` operator CLI; resolves to the process exit code. */
export async function runSparkCli(argv: string[], io: CliIo): Promise<number> {
  const [command, ...rest] = argv;
  switch (command) {
    case 'config':
      return configCommand(rest, io);
    case 'run':
      return runCommand(rest, io);
    case 'status':
      return statusCommand(rest, io);
    case 'dashboard':
      return dashboardCommand(rest, io.stderr);
    case 'keytool':
      return runKeytool(rest, io);
    case 'retry-upload':
      return runRetryUpload(rest, io);
    case 'cancel':
      return runCancel(rest, io);
    case 'logs':
      return runLogs(rest, io);
    case undefined:
    case 'help':
    case '--help':
    case '-h':
      io.stdout.write(`${USAGE}\n`);
      return command === undefined ? EXIT_USAGE : 0;
    default:
      io.stderr.write(`spark: unknown command ${JSON.stringify(command)}\n${USAGE}\n`);
      return EXIT_USAGE;
  }
}

function configCommand(argv: string[], io: CliIo): Promise<number> {
  const [sub, ...rest] = argv;
  if (sub !== 'check') {
    io.stderr.write(`spark config: expected "check", got ${JSON.stringify(sub ?? '')}\n${USAGE}\n`);
    return Promise.resolve(EXIT_USAGE);
  }
  let file: string;
  try {
    const { values } = parseArgs({ args: rest, options: { config: { type: 'string', short: 'c' } }, strict: true });
    file = values.config ?? DEFAULT_CONFIG_FILE;
  } catch (error) {
    io.stderr.write(`spark config check: ${(error as Error).message}\n`);
    return Promise.resolve(EXIT_USAGE);
  }
  const config = loadCliConfig(file, io.stderr);
  if (!config) return Promise.resolve(EXIT_CONFIG);
  io.stdout.write(`${JSON.stringify(config, null, 2)}\n`);
  return Promise.resolve(0);
}
