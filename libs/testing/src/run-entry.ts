import { spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { nodeEntryArgs } from './entry-bundle.js';

/** What a finished command printed and how it ended. */
export interface CommandResult {
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
}

/** How {@link runTsEntry} runs a command. */
export interface RunOptions {
  env?: NodeJS.ProcessEnv;
  /** SIGKILL after this long (default 30 s). */
  timeoutMs?: number;
  /** Called with all stdout so far each time more arrives, e.g. to wait until a follower has started. */
  onStdout?: (stdout: string) => void;
}

/**
 * Runs a TypeScript entry point (a service's `src/main.ts`, the `spark` CLI)
 * from its sources, as {@link nodeEntryArgs} starts it, so no build is
 * needed. Resolves when the process exits.
 */
export function runTsEntry(entry: string, args: string[], options: RunOptions = {}): Promise<CommandResult> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [...nodeEntryArgs(entry), ...args], {
      env: { ...process.env, ...options.env },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (chunk: Buffer) => {
      stdout += chunk.toString();
      options.onStdout?.(stdout);
    });
    child.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
    const timer = setTimeout(() => child.kill('SIGKILL'), options.timeoutMs ?? 30_000);
    child.on('error', reject);
    child.on('close', (code, signal) => {
      clearTimeout(timer);
      resolve({ code, signal, stdout, stderr });
    });
  });
}

/**
 * Runs the operator's `spark` command from source as a process, as an
 * operator types it, for the services' tests (`spark cancel` against a
 * running builder, `spark retry-upload` against the uploader). The entry is
 * `@spark/cli`'s `./main`, resolved by package name: a dependency this
 * package declares, which its package.json keeps out of Nx's project graph
 * (`implicitDependencies`), because the CLI's own tests use this package and
 * the edge would make a cycle. The CLI is only run here, never imported.
 */
export function runSparkCommand(args: string[], options: RunOptions = {}): Promise<CommandResult> {
  return runTsEntry(fileURLToPath(import.meta.resolve('@spark/cli/main')), args, options);
}
