import { ConfigError, EX_CONFIG, EX_NOINPUT, formatProblem, loadConfig, type SparkConfig } from '@spark/config';

/**
 * Loads spark.toml for a CLI command: warnings go to `stderr`. On errors it
 * writes one line per problem and returns the command's exit code: 66
 * (EX_NOINPUT) when the file is missing or unreadable, 78 (EX_CONFIG) when it
 * does not parse or check.
 */
export function loadCliConfig(file: string, stderr: NodeJS.WritableStream): SparkConfig | number {
  try {
    const loaded = loadConfig(file);
    for (const warning of loaded.warnings) stderr.write(`${formatProblem(warning)}\n`);
    return loaded.config;
  } catch (error) {
    if (error instanceof ConfigError) {
      stderr.write(`${error.message}\n`);
      return error.unreadable ? EX_NOINPUT : EX_CONFIG;
    }
    throw error;
  }
}
