import { parseArgs } from 'node:util';
import { ConfigError, DEFAULT_CONFIG_FILE, formatProblem, loadConfig, type LoadedConfig } from './spark-config.js';

/** Exit code for a configuration that cannot be used (as `spark config check` and every service use it). */
export const EXIT_CONFIG = 2;

/** Command-line options every service takes. */
export interface ServiceArgs {
  /** `--config FILE`, default `/etc/laniakea/spark.toml`. */
  configFile: string;
}

/**
 * Reads `--config FILE` (or `--config=FILE`) and `--help`. Prints usage and
 * exits on `--help`; throws with a usage message on anything else.
 */
export function parseServiceArgs(command: string, argv: string[] = process.argv.slice(2)): ServiceArgs {
  const usage = `usage: ${command} [--config FILE]\n  --config FILE  spark.toml to load (default ${DEFAULT_CONFIG_FILE})`;
  let values: { config?: string | undefined; help?: boolean | undefined };
  try {
    ({ values } = parseArgs({
      args: argv,
      options: { config: { type: 'string', short: 'c' }, help: { type: 'boolean', short: 'h' } },
      strict: true,
      allowPositionals: false,
    }));
  } catch (error) {
    throw new Error(`${command}: ${(error as Error).message}\n${usage}`);
  }
  if (values.help) {
    process.stdout.write(`${usage}\n`);
    process.exit(0);
  }
  return { configFile: values.config ?? DEFAULT_CONFIG_FILE };
}

/**
 * Loads the config for a service or CLI command. On problems, writes each to
 * stderr (one line each, file:line: key: message) and exits {@link EXIT_CONFIG};
 * warnings are written and the config is returned.
 */
export function loadConfigOrExit(file: string, stderr: NodeJS.WritableStream = process.stderr): LoadedConfig {
  try {
    const loaded = loadConfig(file);
    for (const warning of loaded.warnings) stderr.write(`${formatProblem(warning)}\n`);
    return loaded;
  } catch (error) {
    if (error instanceof ConfigError) {
      stderr.write(`${error.message}\n`);
      process.exit(EXIT_CONFIG);
    }
    throw error;
  }
}
