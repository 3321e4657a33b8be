import { execFile } from 'node:child_process';
import { debspawnCommand, type DebspawnEnvironment } from './debspawn-command.js';

/** `debspawn --version`, asked once and remembered (`unknown` when it cannot be run). */
export function debspawnVersionOnce(env: DebspawnEnvironment): () => Promise<string> {
  let version: Promise<string> | null = null;
  return () =>
    (version ??= new Promise((resolve) => {
      const command = debspawnCommand(env, ['--version']);
      execFile(command.file, command.args, { timeout: 30_000, env: { ...process.env, ...command.env } }, (error, stdout) => {
        resolve(error === null ? stdout.trim() || 'unknown' : 'unknown');
      });
    }));
}
