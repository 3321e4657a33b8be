import { createRequire } from 'node:module';
import { COMMANDS, commandUsage, EXIT_USAGE, USAGE, type CliIo } from './commands.js';

export { EXIT_USAGE, type CliIo } from './commands.js';

/** This installation's version (the package's, from `src/` and `dist/` alike). */
function version(): string {
  return (createRequire(import.meta.url)('../package.json') as { version: string }).version;
}

/** True when the arguments before a `--` ask for help. */
function asksForHelp(argv: readonly string[]): boolean {
  const end = argv.indexOf('--');
  return (end === -1 ? argv : argv.slice(0, end)).some((arg) => arg === '--help' || arg === '-h');
}

/**
 * Runs the `spark` operator CLI; resolves to the process exit code.
 * `spark --help`, `spark --version` and `spark <command> [<subcommand>] --help`
 * print and exit 0; an unknown command or option exits 64 with the usage.
 */
export async function runSparkCli(argv: string[], io: CliIo): Promise<number> {
  const [name, ...rest] = argv;
  if (name === undefined) {
    io.stderr.write(`${USAGE}\n`);
    return EXIT_USAGE;
  }
  if (name === '--help' || name === '-h' || name === 'help') {
    io.stdout.write(`${USAGE}\n`);
    return 0;
  }
  if (name === '--version' || name === '-V') {
    io.stdout.write(`spark ${version()}\n`);
    return 0;
  }
  const command = COMMANDS[name];
  if (!command) {
    io.stderr.write(`spark: unknown command ${JSON.stringify(name)}\n${USAGE}\n`);
    return EXIT_USAGE;
  }
  if (asksForHelp(rest)) {
    io.stdout.write(`${commandUsage(name)}\n`);
    return 0;
  }
  return command.run(rest, io);
}
