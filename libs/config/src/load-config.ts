import { readFileSync } from 'node:fs';
import { systemEnvironment, type ConfigEnvironment } from './config-environment.js';
import { ConfigError } from './config-error.js';
import { DEFAULT_CONFIG_FILE } from './defaults.js';
import { parseConfig, type LoadedConfig } from './parse-config.js';

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
