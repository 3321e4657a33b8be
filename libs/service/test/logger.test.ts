import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, openSync, closeSync, readFileSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import { formatLogRecord, syslogPriority } from '@spark/service';

const dir = mkdtempSync(join(tmpdir(), 'spark-logger-'));
after(() => rmSync(dir, { recursive: true, force: true }));

const script = `import { createLogger } from '@spark/service';
const log = createLogger('probe');
log.info('hello');
log.warn({ jobId: 'a1', file: 'x y.deb' }, 'careful');
log.error({ err: new TypeError('went wrong') }, 'broken');`;

/** Runs a service logger with stdout on a file; JOURNAL_STREAM names that file (as systemd does) or another one. */
function logTo(file: string, journalStream: (fd: number) => string, format?: string): string[] {
  const fd = openSync(file, 'w');
  const result = spawnSync(process.execPath, ['--conditions=@spark/source', '--import', 'tsx', '--input-type=module', '-e', script], {
    stdio: ['ignore', fd, 'inherit'],
    env: { ...process.env, JOURNAL_STREAM: journalStream(fd), ...(format === undefined ? {} : { SPARK_LOG_FORMAT: format }) },
  });
  closeSync(fd);
  assert.equal(result.status, 0);
  return readFileSync(file, 'utf8').trim().split('\n');
}

describe('service logs under journald', () => {
  it('maps pino levels to syslog priorities', () => {
    assert.deepEqual([10, 20, 30, 40, 50, 60].map(syslogPriority), [7, 7, 6, 4, 3, 2]);
  });

  const journalOf = (file: string) => () => {
    const info = statSync(file);
    return `${info.dev}:${info.ino}`;
  };

  it('writes text lines with their priority when stdout is the journal stream: level name, message, fields', () => {
    const file = join(dir, 'journal');
    assert.deepEqual(logTo(file, journalOf(file)), [
      '<6>INFO hello',
      '<4>WARN careful jobId=a1 file="x y.deb"',
      '<3>ERROR broken err="TypeError: went wrong"',
    ]);
  });

  it('keeps JSON lines, each with its priority, in the journal with SPARK_LOG_FORMAT=json', () => {
    const file = join(dir, 'journal-json');
    const lines = logTo(file, journalOf(file), 'json');
    assert.deepEqual(
      lines.map((line) => line.slice(0, 3)),
      ['<6>', '<4>', '<3>'],
    );
    assert.equal((JSON.parse(lines[0]!.slice(3)) as { msg: string }).msg, 'hello');
  });

  it('writes plain JSON when stdout is not the stream JOURNAL_STREAM names (a child on a pipe), text if asked', () => {
    const lines = logTo(join(dir, 'plain'), () => '1:1');
    assert.ok(lines.every((line) => line.startsWith('{')));
    assert.deepEqual(
      logTo(join(dir, 'plain-text'), () => '1:1', 'text'),
      ['INFO hello', 'WARN careful jobId=a1 file="x y.deb"', 'ERROR broken err="TypeError: went wrong"'],
    );
  });

  it('keeps a text line one line, and quotes what is not one plain word', () => {
    assert.equal(
      formatLogRecord({ level: 50, time: 1, service: 's', msg: 'two\nlines', path: '/a b', n: 3, ok: true, obj: { a: 1 }, eq: 'a=b' }),
      'ERROR two\\nlines path="/a b" n=3 ok=true obj={"a":1} eq="a=b"',
    );
  });
});
