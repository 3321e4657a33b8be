import { execa } from 'execa';
import { debspawnCommand, type DebspawnEnvironment } from './debspawn-command.js';

/** `debspawn --version`, asked once and remembered (`unknown` when it cannot be run). */
export function debspawnVersionOnce(env: DebspawnEnvironment): () => Promise<string> {
  let version: Promise<string> | null = null;
  return () =>
    (version ??= (async () => {
      const command = debspawnCommand(env, ['--version']);
      const result = await execa(command.file, command.args, { reject: false, timeout: 30_000 });
      return result.exitCode === 0 && typeof result.stdout === 'string' ? result.stdout.trim() || 'unknown' : 'unknown';
    })());
}
