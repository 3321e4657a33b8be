import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { createWarningCollector, WARNING_NEEDLES } from '../src/compiler-warnings.js';
import { openJobLog } from '../src/job-log.js';
import { createExcerptBuffer } from '../src/log-excerpt.js';
import { createOutputWatch } from '../src/output-watch.js';
import { createLineMatcher, createLineScanner, plainText } from '../src/terminal-text.js';

const E = '\x1b';
// GCC's coloured diagnostics as on a terminal: `:` and `warning:` coloured apart, the option an OSC 8 link.
const PTY_LINES = [
  `${E}[01m${E}[Ksrc/parser.c:${E}[m${E}[K In function ‘${E}[01m${E}[Kparse_header${E}[m${E}[K’:`,
  `${E}[01m${E}[Ksrc/parser.c:42:13:${E}[m${E}[K ${E}[01;35m${E}[Kwarning: ${E}[m${E}[Kunused variable ‘${E}[01m${E}[Klength${E}[m${E}[K’ [${E}]8;;https://gcc.gnu.org/onlinedocs/gcc/Warning-Options.html#index-Wunused-variable${E}\\${E}[01;35m${E}[K-Wunused-variable${E}[m${E}[K${E}]8;;${E}\\]`,
  `   42 |   int ${E}[01;35m${E}[Klength${E}[m${E}[K;`,
  'x86_64-linux-gnu-gcc -g -O2 -Wall -c src/main.c -o build/main.o',
  'plain.c:7:1: warning: no colour here [-Wextra]',
  // A needle inside an OSC 8 link target is not in the plain text: not a line of the listener.
  `${E}]8;;file:///x: warning: y${E}\\PASS${E}]8;;${E}\\ tests/link.sh`,
  `Reading package lists... 0%\rReading package lists... 50%\rReading package lists... Done`,
  `${E}[1mdpkg-buildpackage: ${E}[32minfo${E}[0m: source package hello – ünïcödé`,
  'The following packages have unmet dependencies:',
  ' sbuild-build-depends-main-dummy : Depends: libfoo-dev but it is not installable',
];

/** What the listener saw before the relay worked on bytes: every line decoded, made plain, then tested. */
function expectedLines(output: string, needles: readonly string[]): string[] {
  const lines = output.split('\n');
  if (lines.at(-1) === '') lines.pop();
  return lines.map(plainText).filter((line) => needles.some((needle) => line.includes(needle)));
}

/** `bytes` cut into pieces of pseudo-random sizes (1 byte to 3 KiB), so cuts fall inside characters, escapes and CRLFs. */
function pieces(bytes: Buffer, seed: number): Buffer[] {
  const out: Buffer[] = [];
  let state = seed;
  for (let at = 0; at < bytes.length;) {
    state = (state * 1103515245 + 12345) % 2 ** 31;
    const size = 1 + (state % 3072);
    out.push(bytes.subarray(at, at + size));
    at += size;
  }
  return out;
}

describe('job log: output relayed as bytes, lines decoded only for listeners and excerpts', () => {
  let dir: string;
  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'spark-job-log-'));
  });
  after(async () => {
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  it('passes a listener exactly the plain lines holding its needles, however the output is cut into chunks', () => {
    const needles = [...WARNING_NEEDLES, 'The following packages have unmet dependencies:'];
    const output =
      Array.from({ length: 400 }, (_, i) => `${PTY_LINES[i % PTY_LINES.length]}\r\n`).join('') + 'last line: warning: unterminated';
    const bytes = Buffer.from(output);
    for (const seed of [1, 2, 3]) {
      const watch = createOutputWatch();
      const seen: string[] = [];
      const unmet: string[] = [];
      watch.onLine(needles, (line) => seen.push(line));
      watch.onLine(['unmet dependencies'], (line) => unmet.push(line));
      for (const piece of pieces(bytes, seed)) watch.output(piece);
      watch.end();
      assert.deepEqual(seen, expectedLines(output, needles));
      assert.equal(seen.filter((line) => line.includes(': warning: ')).length, 2 * 40 + 1);
      assert.ok(seen.includes('src/parser.c:42:13: warning: unused variable ‘length’ [-Wunused-variable]'));
      assert.ok(!seen.some((line) => line.includes('link.sh')), 'a needle inside an escape sequence is not a match');
      assert.equal(unmet.length, 40);
    }
  });

  it("relays a command's output into the file byte for byte, reads it back for the listeners and the excerpt, and keeps the notes in order around it", async () => {
    const needles = [...WARNING_NEEDLES, 'The following packages have unmet dependencies:'];
    const output = Array.from({ length: 4000 }, (_, i) => `${PTY_LINES[i % PTY_LINES.length]}\r\n`).join('');
    const source = join(dir, 'relayed.out');
    await writeFile(source, output);
    const log = await openJobLog(join(dir, 'relayed.log'));
    const seen: string[] = [];
    log.onLine(needles, (line) => seen.push(line));
    log.note('before');
    const pipe = await log.openOutput();
    // Twice, with a pause between: the reader catches up with the file, naps, and is behind again.
    const child = spawn('sh', ['-c', 'cat "$1"; sleep 0.3; cat "$1"', 'sh', source], { stdio: ['ignore', pipe.input, 'ignore'] });
    pipe.release();
    log.note('while it runs');
    const [code] = (await once(child, 'exit')) as [number];
    assert.equal(code, 0);
    assert.equal(await pipe.finish(5_000), true, 'the copier ends once the command closed the pipe');
    log.note('after');
    const excerpt = log.takeExcerpt() ?? '';
    await log.close();
    const file = await readFile(log.path, 'utf8');
    assert.equal(file, `[spark-builder] before\n${output}${output}[spark-builder] while it runs\n[spark-builder] after\n`);
    assert.deepEqual(seen, expectedLines(output + output, needles));
    assert.ok(excerpt.startsWith('[… '), 'the excerpt is bounded');
    // The excerpt takes notes as they are made, output as it is read back: the note made while the command ran went out
    // before most of the output.
    assert.ok(excerpt.endsWith(`${plainText(PTY_LINES[9] as string)}\n[spark-builder] after\n`), excerpt.slice(-300));
  });

  it('finds the same lines in a run without escape sequences (searched as bytes) as in one with them', () => {
    const match = createLineMatcher(['warning: ', 'unmet dependencies', 'ünïcödé']);
    const plain = [
      'gcc -c a.c',
      'a.c:1:2: warning: one warning: two ünïcödé',
      'Reading... 50%\rThe following packages have unmet dependencies:',
      'warning: at the start',
      'warn\ring: broken by a bare CR',
      'ünïcödé at the end: warning: ',
    ];
    const expected = [plain[1], plain[2], plain[3], plain[5]].map((line) => plainText(line as string));
    const bytes = Buffer.from(`${plain.join('\n')}\n`);
    assert.deepEqual(match(bytes), expected);
    // The same lines with one escape sequence in the run: the regular expression's way, the same lines found.
    assert.deepEqual(match(Buffer.from(`\x1b[0m${plain.join('\n')}\n`)), expected);
  });

  it('a command whose output cannot be opened leaves the log usable: notes still go to the file, the next command gets its output', async () => {
    const log = await openJobLog(join(dir, 'no-copier.log'));
    const tmp = process.env['TMPDIR'];
    // The FIFO is made in a private directory under TMPDIR: one that does not exist stops it.
    process.env['TMPDIR'] = join(dir, 'missing');
    try {
      await assert.rejects(log.openOutput(), /ENOENT/);
    } finally {
      if (tmp === undefined) delete process.env['TMPDIR'];
      else process.env['TMPDIR'] = tmp;
    }
    log.note('after the failed start');
    const pipe = await log.openOutput();
    const child = spawn('sh', ['-c', 'echo from the next command'], { stdio: ['ignore', pipe.input, 'ignore'] });
    pipe.release();
    await once(child, 'exit');
    await pipe.finish(5_000);
    await log.close();
    assert.equal(await readFile(log.path, 'utf8'), '[spark-builder] after the failed start\nfrom the next command\n');
  });

  it('stops calling a listener once it is removed, and searches no more for needles only it held', () => {
    const log = createOutputWatch();
    const warnings = createWarningCollector(3);
    const unmet: string[] = [];
    let calls = 0;
    log.onLine(['unmet dependencies'], (line) => unmet.push(line));
    const stop = log.onLine(WARNING_NEEDLES, (line) => {
      calls += 1;
      warnings.line(line);
      if (warnings.full) stop();
    });
    const output = Array.from({ length: 100 }, (_, i) => `${PTY_LINES[i % PTY_LINES.length]}\r\n`).join('');
    // One run of many lines (all of it in one chunk), then more chunks: the removal holds within a run and after it.
    log.output(Buffer.from(output));
    for (const piece of pieces(Buffer.from(output), 4)) log.output(piece);
    stop();
    log.end();
    assert.equal(warnings.warnings.length, 3);
    assert.ok(warnings.full);
    // The third warning was the last line the listener saw: the first block's In function line and two warnings, then
    // the second block's In function line and its first warning.
    assert.equal(calls, 5);
    assert.equal(unmet.length, 20, 'the other listener still gets every line of its own');
  });

  it('refuses a needle that could never be a piece of one plain line', async () => {
    const log = await openJobLog(join(dir, 'needles.log'));
    assert.throws(() => log.onLine([''], () => undefined), /cannot watch the output for "": a needle is a non-empty piece of one line/);
    assert.throws(() => log.onLine(['a\nb'], () => undefined), /cannot watch the output for "a\\nb"/);
    assert.throws(() => log.onLine([`${E}[1m`], () => undefined), /cannot watch the output for/);
    await log.close();
  });

  it('cuts an endless line into pieces of 64 KiB at most, between UTF-8 characters', () => {
    const scanner = createLineScanner(64 * 1024);
    const line = Buffer.from('ä'.repeat(100_000));
    const runs = [...pieces(line, 7).flatMap((piece) => scanner.push(piece)), ...scanner.end()];
    assert.ok(runs.length >= 3);
    for (const run of runs) {
      assert.ok(run.length <= 64 * 1024 + 1, `a piece of ${run.length} bytes`);
      assert.equal(run.at(-1), 0x0a);
      assert.doesNotMatch(run.toString('utf8'), /\ufffd/);
    }
    assert.equal(runs.map((run) => run.toString('utf8').slice(0, -1)).join(''), line.toString('utf8'));
  });

  it('sends excerpts as plain text in the order of notes and output, bounded, saying how many bytes were left out', () => {
    const watch = createOutputWatch();
    watch.note('[spark-builder] building hello\n');
    watch.output(Buffer.from(`${E}[1mdpkg-buildpackage: ${E}[32minfo${E}[0m: source package hello\r\npartial `));
    watch.note('[spark-builder] a note while a line is open\n');
    watch.output(Buffer.from('line\r\n'));
    assert.equal(
      watch.takeExcerpt(),
      '[spark-builder] building hello\ndpkg-buildpackage: info: source package hello\n[spark-builder] a note while a line is open\npartial line\n',
    );
    assert.equal(watch.takeExcerpt(), null);

    const excerpt = createExcerptBuffer(1000, 4000);
    const line = `${E}[32mok${E}[0m ${'x'.repeat(90)}\r\n`;
    for (let i = 0; i < 500; i++) excerpt.appendOutput(Buffer.from(`${i} ${line}`));
    excerpt.append('[spark-builder] last note\n');
    const text = excerpt.take() ?? '';
    const [mark, ...rest] = text.split('\n');
    const shown = rest.join('\n');
    assert.match(mark ?? '', /^\[… (\d+) bytes of output left out; the full log is kept on the worker …\]$/);
    assert.ok(shown.length <= 1000, `${shown.length} characters shown`);
    assert.match(shown, /^\d+ ok x+\n/, 'the excerpt starts at a line, made plain');
    assert.ok(shown.endsWith('499 ok ' + 'x'.repeat(90) + '\n[spark-builder] last note\n'));
    // The count is exact: the bytes of output not shown, escapes and CRs included.
    const note = Buffer.byteLength('[spark-builder] last note\n');
    const raw = (i: number) => Buffer.byteLength(`${i} ${line}`);
    const total = Array.from({ length: 500 }, (_, i) => raw(i)).reduce((a, b) => a + b) + note;
    const shownRaw =
      shown
        .split('\n')
        .slice(0, -2)
        .reduce((sum, plain) => sum + raw(Number(plain.split(' ')[0])), 0) + note;
    assert.equal(Number(/(\d+) bytes/.exec(mark ?? '')?.[1]), total - shownRaw);
  });
});
