import { spawn } from 'node:child_process';
import { nodeEntryArgs } from './entry-bundle.js';
import { waitFor } from './wait-for.js';

/** A service's `main.ts` running as a real process, as systemd would run it. */
export interface ServiceProcess {
  pid: number;
  /** Every JSON log line so far, parsed. */
  lines: Record<string, unknown>[];
  /** All stdout and stderr so far, for assertion messages. */
  output(): string;
  /** Resolves with the first log line (from now on or already seen, after `from`) that `match` accepts; rejects after `timeoutMs`. */
  waitForLine(
    what: string,
    match: (line: Record<string, unknown>) => boolean,
    timeoutMs?: number,
    from?: number,
  ): Promise<Record<string, unknown>>;
  /** The exit code once it exited (null when a signal ended it), or undefined while it runs. */
  exitCode(): number | null | undefined;
  signal(signal: NodeJS.Signals): void;
  /** SIGTERM, then resolves with the exit code; SIGKILL after `timeoutMs`. */
  stop(timeoutMs?: number): Promise<number | null>;
}

/**
 * Starts a TypeScript entry (a service's `src/main.ts`) from its sources, as
 * {@link runTsEntry} does, but keeps it running and collects its JSON log lines.
 */
export function startServiceProcess(entry: string, args: string[], env: NodeJS.ProcessEnv = {}): ServiceProcess {
  const child = spawn(process.execPath, [...nodeEntryArgs(entry), ...args], {
    env: { ...process.env, ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const lines: Record<string, unknown>[] = [];
  let output = '';
  let buffer = '';
  child.stdout.on('data', (chunk: Buffer) => {
    output += chunk.toString();
    buffer += chunk.toString();
    const parts = buffer.split('\n');
    buffer = parts.pop() ?? '';
    for (const part of parts) {
      try {
        lines.push(JSON.parse(part) as Record<string, unknown>);
      } catch {
        // Not a log line; it stays in output().
      }
    }
  });
  child.stderr.on('data', (chunk: Buffer) => (output += chunk.toString()));
  let code: number | null | undefined;
  const exited = new Promise<number | null>((resolve) =>
    child.once('exit', (exitCode) => {
      code = exitCode;
      resolve(exitCode);
    }),
  );
  return {
    pid: child.pid ?? -1,
    lines,
    output: () => output,
    waitForLine(what, match, timeoutMs = 20_000, from = 0) {
      const probe = () => {
        const found = lines.slice(from).find(match);
        if (found === undefined && code !== undefined) throw new Error(`exited (${code}) before ${what}:\n${output}`);
        return found;
      };
      return waitFor(what, probe, { timeoutMs, intervalMs: 20, detail: () => output });
    },
    exitCode: () => code,
    signal: (signal) => child.kill(signal),
    async stop(timeoutMs = 15_000) {
      if (code !== undefined) return code;
      child.kill('SIGTERM');
      const timer = setTimeout(() => child.kill('SIGKILL'), timeoutMs);
      const result = await exited;
      clearTimeout(timer);
      return result;
    },
  };
}
