import { Writable } from 'node:stream';
import { runSparkCli, type CliIo } from '@spark/cli';

/** What a `spark` command wrote and the exit code it ended with. */
export interface SparkResult {
  code: number;
  stdout: string;
  stderr: string;
}

/** A stream that keeps what is written to it, synchronously (nothing is left in flight when the command resolves). */
function collector(): { stream: Writable; text: () => string } {
  const chunks: string[] = [];
  const stream = new Writable({
    write(chunk: Buffer | string, _encoding, done) {
      chunks.push(chunk.toString());
      done();
    },
  });
  return { stream, text: () => chunks.join('') };
}

/**
 * Runs `spark` in this process, as `src/main.ts` does, and collects what it
 * writes. Given a command line (`runSpark(['status', '--json'])`), it runs it
 * as an operator types it; given a function, it runs one command with
 * dependencies only a test gives it
 * (`runSpark((io) => verifyCommand(argv, io, host))`).
 */
export async function runSpark(command: readonly string[] | ((io: CliIo) => Promise<number>)): Promise<SparkResult> {
  const stdout = collector();
  const stderr = collector();
  const io = { stdout: stdout.stream, stderr: stderr.stream };
  const code = typeof command === 'function' ? await command(io) : await runSparkCli([...command], io);
  return { code, stdout: stdout.text(), stderr: stderr.text() };
}
