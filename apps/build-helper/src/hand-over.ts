import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { createWriteStream } from 'node:fs';
import { chown, copyFile, mkdir, type FileHandle } from 'node:fs/promises';
import { pipeline } from 'node:stream/promises';

/** The user the helper works for (sudo's `SUDO_UID`/`SUDO_GID`), or null when root called it directly. */
export type Caller = { uid: number; gid: number } | null;

async function asCaller(
  caller: { uid: number; gid: number },
  file: string,
  args: string[],
  stdio: 'in' | 'out',
  local: string | FileHandle,
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
      ? pipeline(child.stdout!, createWriteStream(local as string, { flags: 'wx', mode: 0o600 }))
      : pipeline((local as FileHandle).createReadStream({ autoClose: false, start: 0 }), child.stdin!);
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
  await asCaller(caller, '/bin/cat', ['--', source], 'out', target);
}

/**
 * Writes the helper's private file, open as `source`, to `target` in the
 * caller's workspace with the caller's rights, so the result belongs to the
 * caller and a link planted there cannot make root write elsewhere.
 */
export async function writeAsCaller(caller: Caller, source: FileHandle, target: string): Promise<void> {
  if (!caller) {
    const out = createWriteStream(target, { flags: 'w', mode: 0o644 });
    return pipeline(source.createReadStream({ autoClose: false, start: 0 }), out);
  }
  return asCaller(caller, '/bin/sh', ['-c', 'exec cat > "$1"', 'sh', target], 'in', source);
}

/**
 * Copies the caller's directory tree `source` into the new directory `target`
 * in the helper's private space: `tar` reads it as the caller, and a second
 * `tar` writes it as `writer` (the run's throwaway user, see sandbox.ts),
 * starting in `target`, which neither could reach by path. The writer is not
 * the caller, so no process of the caller can get a handle into the copy
 * (through `/proc/<pid>/cwd`) and change it while root uses it. Links in the
 * tree stay links. Root copies directly.
 */
export async function copyTreeAsCaller(caller: Caller, source: string, target: string, writer: number): Promise<void> {
  await mkdir(target, { mode: 0o755 });
  if (!caller) {
    const cp = spawn('cp', ['-a', '--', `${source}/.`, target], { stdio: ['ignore', 'ignore', 'pipe'] });
    const [code] = (await once(cp, 'close')) as [number | null];
    if (code !== 0) throw new Error(`cannot copy ${source}: cp exited with code ${code}`);
    return;
  }
  await chown(target, writer, writer);
  const env = { PATH: '/usr/bin:/bin', LC_ALL: 'C' };
  const reader = spawn('tar', ['-C', source, '-cf', '-', '.'], {
    uid: caller.uid,
    gid: caller.gid,
    env,
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const writing = spawn('tar', ['-xf', '-', '--no-same-owner', '--no-same-permissions'], {
    uid: writer,
    gid: writer,
    env,
    cwd: target,
    stdio: ['pipe', 'ignore', 'pipe'],
  });
  let stderr = '';
  for (const child of [reader, writing]) child.stderr?.setEncoding('utf8').on('data', (chunk: string) => (stderr += chunk));
  writing.stdin?.on('error', () => undefined);
  reader.stdout?.pipe(writing.stdin);
  const [[readCode], [writeCode]] = (await Promise.all([once(reader, 'close'), once(writing, 'close')])) as [
    [number | null],
    [number | null],
  ];
  if (readCode !== 0 || writeCode !== 0)
    throw new Error(`cannot copy ${source}: ${stderr.trim() || `tar exited with ${readCode}/${writeCode}`}`);
}
