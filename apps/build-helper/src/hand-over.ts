import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { createReadStream, createWriteStream } from 'node:fs';
import { copyFile } from 'node:fs/promises';
import { pipeline } from 'node:stream/promises';

/** The user the helper works for (sudo's `SUDO_UID`/`SUDO_GID`), or null when root called it directly. */
export type Caller = { uid: number; gid: number } | null;

async function asCaller(
  caller: { uid: number; gid: number },
  file: string,
  args: string[],
  stdio: 'in' | 'out',
  local: string,
): Promise<void> {
  const child = spawn(file, args, {
    uid: caller.uid,
    gid: caller.gid,
    env: { PATH: '/usr/bin:/bin', LC_ALL: 'C' },
    stdio: stdio === 'out' ? ['ignore', 'pipe', 'pipe'] : ['pipe', 'ignore', 'pipe'],
  });
  let stderr = '';
  child.stderr?.setEncoding('utf8').on('data', (chunk: string) => (stderr += chunk));
  const exited = once(child, 'close') as Promise<[number | null, NodeJS.Signals | null]>;
  const copying =
    stdio === 'out'
      ? pipeline(child.stdout!, createWriteStream(local, { flags: 'wx', mode: 0o600 }))
      : pipeline(createReadStream(local), child.stdin!);
  const [[code], copied] = await Promise.all([
    exited,
    copying.then(
      () => null,
      (error: Error) => error,
    ),
  ]);
  if (code !== 0) throw new Error(stderr.trim() || `${file} exited with code ${code}`);
  if (copied) throw copied;
}

/**
 * Copies the caller's file `source` to the helper's private `target`, reading
 * it with the caller's own rights: a link planted in the workspace reaches only
 * what the builder could read anyway.
 */
export async function readAsCaller(caller: Caller, source: string, target: string): Promise<void> {
  if (!caller) return copyFile(source, target);
  return asCaller(caller, '/bin/cat', ['--', source], 'out', target);
}

/**
 * Writes the helper's private `source` to `target` in the caller's workspace
 * with the caller's rights, so the result belongs to the caller and a link
 * planted there cannot make root write elsewhere.
 */
export async function writeAsCaller(caller: Caller, source: string, target: string): Promise<void> {
  if (!caller) return copyFile(source, target);
  return asCaller(caller, '/bin/sh', ['-c', 'exec cat > "$1"', 'sh', target], 'in', source);
}
