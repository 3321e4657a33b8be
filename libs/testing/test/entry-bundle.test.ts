import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { mkdir, mkdtemp, readdir, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { after, before, describe, it } from 'node:test';
import { nodeEntryArgs } from '@spark/testing';

const run = promisify(execFile);

describe('nodeEntryArgs', () => {
  let dir: string;
  let entry: string;
  const greet = (n: number) => writeFile(join(dir, 'src/greet.ts'), `export const greeting = (): string => 'hello ${n}';\n`);
  const start = async (args: string[]) => (await run(process.execPath, args)).stdout.trim();

  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'spark-entry-bundle-'));
    await mkdir(join(dir, 'src'));
    await writeFile(join(dir, 'package.json'), JSON.stringify({ name: 'bundled', version: '7.0.0', type: 'module' }));
    await greet(1);
    entry = join(dir, 'src/main.ts');
    await writeFile(
      entry,
      [
        "import { readFileSync } from 'node:fs';",
        "import { greeting } from './greet.js';",
        "const { version } = JSON.parse(readFileSync(new URL('../package.json', import.meta.url), 'utf8')) as { version: string };",
        'console.log(`${greeting()} from ${version}`);',
      ].join('\n'),
    );
  });
  after(() => rm(dir, { recursive: true, force: true }));

  it('runs a src/ entry from a bundle in dist/, at the same depth below its package', async () => {
    const args = nodeEntryArgs(entry);
    assert.equal(args.length, 2);
    assert.equal(args[0], '--conditions=@spark/source');
    assert.match(args[1] ?? '', new RegExp(`^${dir}/dist/main\\.bundle-[0-9-]+\\.mjs$`));
    assert.equal(await start(args), 'hello 1 from 7.0.0');
  });

  it('builds it once while its sources stay as they are', () => {
    assert.deepEqual(nodeEntryArgs(entry), nodeEntryArgs(entry));
  });

  it('builds it again when a file it was made from changes', async () => {
    const old = nodeEntryArgs(entry);
    await greet(22);
    const fresh = nodeEntryArgs(entry);
    assert.notDeepEqual(fresh, old);
    assert.equal(await start(fresh), 'hello 22 from 7.0.0');
    // The one built before stays a minute, for a test file that may be starting from it.
    assert.equal((await readdir(join(dir, 'dist'))).filter((name) => name.endsWith('.mjs')).length, 2);
  });

  it('runs an entry outside a src/ directory through tsx', () => {
    const fixture = join(dir, 'fixture.ts');
    assert.deepEqual(nodeEntryArgs(fixture), ['--conditions=@spark/source', '--import', 'tsx', fixture]);
  });
});
