import { parseArgs } from 'node:util';
import { DEFAULT_CONFIG_FILE, loadConfigOrExitCode } from '@spark/config';
import { redactRedisUrl } from '@spark/service';
import { usageError, type CliIo } from './commands.js';

/** `spark config check [--config FILE]`: prints the effective config as JSON; exit 0; 78 on a bad config, 66 on a missing one, 64 on a bad command line. */
export function runConfig(argv: string[], io: CliIo): Promise<number> {
  const [sub, ...rest] = argv;
  if (sub !== 'check') return Promise.resolve(usageError(io, 'config', `expected "check", got ${JSON.stringify(sub ?? '')}`));
  let file: string;
  try {
    const { values } = parseArgs({ args: rest, options: { config: { type: 'string', short: 'c' } }, strict: true });
    file = values.config ?? DEFAULT_CONFIG_FILE;
  } catch (error) {
    return Promise.resolve(usageError(io, 'config check', (error as Error).message));
  }
  const config = loadConfigOrExitCode(file, io.stderr);
  if (typeof config === 'number') return Promise.resolve(config);
  // A password in RedisUrl is a secret like the others, which live in files: never printed.
  io.stdout.write(`${JSON.stringify({ ...config, redisUrl: redactRedisUrl(config.redisUrl) }, null, 2)}\n`);
  return Promise.resolve(0);
}
