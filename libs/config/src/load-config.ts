import { readFileSync } from 'node:fs';
import { systemEnvironment, type ConfigEnvironment } from './config-environment.js';
import { ConfigError, formatProblem } from './config-error.js';
import { DEFAULT_CONFIG_FILE } from './defaults.js';
import { EX_CONFIG, EX_NOINPUT } from './sysexits.js';
import { parseConfig, type LoadedConfig } from './parse-config.js';
import type { SparkConfig } from './spark-config.js';

/** Reads and checks a spark.toml; throws {@link ConfigError} naming file, key and line for every problem. */
export function loadConfig(file: string = DEFAULT_CONFIG_FILE, env: ConfigEnvironment = systemEnvironment): LoadedConfig {
  let source: string;
  try {
    source = readFileSync(file, 'utf8');
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    const reason = code === 'ENOENT' ? 'file not found' : code === 'EACCES' ? 'permission denied' : (error as Error).message;
    throw new ConfigError([{ severity: 'error', file, key: null, line: null, message: `cannot read config: ${reason}` }], true);
  }
  return parseConfig(source, file, env);
}

/**
 * Loads spark.toml for a program that starts from it (a service, `spark run`,
 * a `spark` command): each warning goes to `stderr` as one line
 * (`file:line: warning: key: message`), and the config is returned. On errors
 * it writes one line per problem and returns the exit code instead: 66
 * (EX_NOINPUT) when the file is missing or unreadable, 78 (EX_CONFIG) when it
 * does not parse or check.
 */
export function loadConfigOrExitCode(
  file: string,
  stderr: NodeJS.WritableStream,
  env: ConfigEnvironment = systemEnvironment,
): SparkConfig | number {
  try {
    const loaded = loadConfig(file, env);
    for (const warning of loaded.warnings) stderr.write(`${formatProblem(warning)}\n`);
    return loaded.config;
  } catch (error) {
    if (!(error instanceof ConfigError)) throw error;
    stderr.write(`${error.message}\n`);
    return error.unreadable ? EX_NOINPUT : EX_CONFIG;
  }
}
