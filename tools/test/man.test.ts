import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { promisify } from 'node:util';
import { helpOf, manFiles } from '../src/man/build.js';
import { parseHelp } from '../src/man/man-page.js';

const run = promisify(execFile);

/** A page as `man` shows it, in one line of single-spaced words. */
async function rendered(file: string): Promise<string> {
  // No bold or underline (-P-bou), no hyphenation (HY=0), long lines: the words as the help text has them.
  const { stdout, stderr } = await run('groff', ['-man', '-ww', '-Tutf8', '-P-c', '-P-bou', '-rHY=0', '-rLL=200n', file]);
  assert.equal(stderr, '', `groff warns about ${file}`);
  return stdout.replace(/\s+/g, ' ');
}

describe('manual pages and bash completion, made from --help', () => {
  let dir: string;
  let files: Map<string, string>;
  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'spark-man-'));
    files = await manFiles();
    for (const [name, text] of files) await writeFile(join(dir, name), text);
  });
  after(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  for (const [page, entry] of [
    ['spark.1', 'apps/cli/src/main.ts'],
    ['spark-connector.8', 'apps/connector/src/main.ts'],
    ['spark-builder.8', 'apps/builder/src/main.ts'],
    ['spark-signer.8', 'apps/signer/src/main.ts'],
    ['spark-uploader.8', 'apps/uploader/src/main.ts'],
  ] as const) {
    it(`${page} says everything its --help says, and groff has no warning for it`, async () => {
      const text = await rendered(join(dir, page));
      const help = parseHelp(await helpOf(entry));
      assert.ok(help.sections.length >= 1, 'the help text has sections');
      for (const section of help.sections) {
        assert.ok(text.includes(section.title.toUpperCase()), `section ${section.title}`);
        for (const item of section.entries) {
          const said = [...item.term, ...item.description].join(' ').replace(/\s+/g, ' ');
          assert.ok(text.includes(said), `${page} lacks: ${said}`);
        }
      }
      for (const line of help.usage) assert.ok(text.includes(line.replace(/\s+/g, ' ')), `synopsis: ${line}`);
    });
  }

  it('completes the commands, subcommands and each command’s options of spark --help, and file names after --config', async () => {
    const script = join(dir, 'spark.bash-completion');
    const complete = async (...words: string[]) => {
      const { stdout } = await run('bash', [
        '-c',
        'source "$0"; COMP_WORDS=("$@"); COMP_CWORD=$((${#COMP_WORDS[@]} - 1)); _spark; printf "%s\\n" "${COMPREPLY[@]}"',
        script,
        ...words,
      ]);
      return stdout.split('\n').filter(Boolean);
    };
    const commands = parseHelp(await helpOf('apps/cli/src/main.ts')).sections.find((section) => section.title === 'commands');
    const names = new Set(commands?.entries.map((entry) => entry.term[0]?.split(' ')[0] ?? ''));
    assert.deepEqual(new Set((await complete('spark', '')).filter((word) => !word.startsWith('-'))), names);
    assert.deepEqual(await complete('spark', 'keytool', 'install-'), [
      'install-worker-key',
      'install-server-key',
      'install-trusted-key',
      'install-signer-key',
    ]);
    assert.deepEqual(await complete('spark', 'status', '--'), ['--config', '--redis', '--prefix', '--stuck-after', '--json', '--help']);
    assert.deepEqual(await complete('spark', 'dashboard', '--re'), ['--redis', '--read-write']);
    await writeFile(join(dir, 'spark.toml'), '');
    assert.deepEqual(await complete('spark', 'verify', '--config', join(dir, 'spark.t')), [join(dir, 'spark.toml')]);
  });
});
