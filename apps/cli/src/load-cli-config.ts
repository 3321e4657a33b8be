import { ConfigError, formatProblem, loadConfig, type SparkConfig } from '@spark/config';

/**
 * Loads spark.toml for a CLI command: warnings go to `stderr`; on errors it
 * writes one line per problem and returns null, and the command exits 2.
 */
export function loadCliConfig(file: string, stderr: NodeJS.WritableStream): SparkConfig | null {
  try {
    const loaded = loadConfig(file);
    for (const warning of loaded.warnings) stderr.write(`${formatProblem(warning)}\n`);
    return loaded.config;
  } catch (error) {
    if (error instanceof ConfigError) {
      stderr.write(`${error.message}\n`);
      return null;
    }
    throw error;
  }
}
