/** One problem found in a config file. `line` is 1-based where known. */
export interface ConfigProblem {
  severity: 'error' | 'warning';
  file: string;
  key: string | null;
  line: number | null;
  message: string;
}

/** `spark.toml:3: MaxJobs: must be at least 1, got 0`. */
export function formatProblem(problem: ConfigProblem): string {
  const where = problem.line === null ? problem.file : `${problem.file}:${problem.line}`;
  const prefix = problem.severity === 'warning' ? 'warning: ' : '';
  return `${where}: ${prefix}${problem.key ? `${problem.key}: ` : ''}${problem.message}`;
}

/**
 * Thrown when a config file has errors; `problems` lists each (warnings
 * included), `message` all of them. `unreadable` is true when the file itself
 * could not be read (missing, no permission) rather than found wrong.
 */
export class ConfigError extends Error {
  constructor(
    readonly problems: ConfigProblem[],
    readonly unreadable = false,
  ) {
    super(problems.map(formatProblem).join('\n'));
    this.name = 'ConfigError';
  }
}
