import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, openSync, closeSync, readFileSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import { syslogPriority } from '@spark/service';

const dir = mkdtempSync(join(tmpdir(), 'spark-logger-'));
after(() => rmSync(dir, { recursive: true, force: true }));

const script = `import { createLogger } from '@spark/service';
const log = createLogger('probe');
log.info('hello');
log.warn('careful');
log.error('broken');`;

/** Runs a service logger with stdout on a file; JOURNAL_STREAM names that file (as systemd does) or another one. */
function logTo(file: string, journalStream: (fd: number) => string): string[] {
  const fd = openSync(file, 'w');
  const result = spawnSync(process.execPath, ['--conditions=@spark/source', '--import', 'tsx', '--input-type=module', '-e', script], {
    stdio: ['ignore', fd, 'inherit'],
    env: { ...process.env, JOURNAL_STREAM: journalStream(fd) },
  });
  closeSync(fd);
  assert.equal(result.status, 0);
  return readFileSync(file, 'utf8').trim().split('\n');
}

describe('service logs under journald', () => {
  it('maps pino levels to syslog priorities', () => {
    assert.deepEqual([10, 20, 30, 40, 50, 60].map(syslogPriority), [7, 7, 6, 4, 3, 2]);
  });

  it('prefixes each JSON line with its priority when stdout is the journal stream', () => {
    const file = join(dir, 'journal');
    const lines = logTo(file, (fd) => {
      const info = statSync(file);
      void fd;
      return `${info.dev}:${info.ino}`;
    });
    assert.deepEqual(
      lines.map((line) => line.slice(0, 3)),
      ['<6>', '<4>', '<3>'],
    );
    assert.equal((JSON.parse(lines[0]!.slice(3)) as { msg: string }).msg, 'hello');
  });

  it('writes plain JSON when stdout is not the stream JOURNAL_STREAM names (a child on a pipe)', () => {
    const lines = logTo(join(dir, 'plain'), () => '1:1');
    assert.ok(lines.every((line) => line.startsWith('{')));
  });
});
