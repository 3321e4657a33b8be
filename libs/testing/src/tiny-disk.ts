import { execFile } from 'node:child_process';
import { promisify } from 'node:util';

const run = promisify(execFile);

/**
 * Mounts a tmpfs of `bytes` on `dir` (a disk that fills up) and returns the
 * function that unmounts it. As root directly, otherwise through `sudo -n`
 * (password-less, as the chaos suite's full-disk scenario).
 */
export async function mountTinyDisk(dir: string, bytes: number): Promise<() => Promise<void>> {
  const asRoot = (command: string, args: string[]) =>
    process.getuid?.() === 0 ? run(command, args) : run('sudo', ['-n', command, ...args]);
  await asRoot('mount', ['-t', 'tmpfs', '-o', `size=${bytes}`, 'spark-test', dir]);
  return async () => {
    await asRoot('umount', ['-l', dir]);
  };
}
