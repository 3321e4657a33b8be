import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { createWarningCollector } from '../src/compiler-warnings.js';
import { firehoseXml } from '../src/firehose.js';

const run = promisify(execFile);

/*
 * fixtures/firehose.rng is firehose's schema as published by
 * fedora-static-analysis/firehose (commit b7b950508f8f13aefc231d465f87695494cc235a),
 * kept verbatim with its LGPL-2.1+ licence header. xmllint comes from Debian's libxml2-utils.
 */
const SCHEMA = fileURLToPath(new URL('./fixtures/firehose.rng', import.meta.url));

describe('Firehose report', () => {
  let dir: string;
  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'spark-firehose-'));
  });
  after(async () => {
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  const validate = async (name: string, xml: string) => {
    const file = join(dir, name);
    await writeFile(file, xml);
    const result = await run('xmllint', ['--noout', '--relaxng', SCHEMA, file]).then(
      ({ stderr }) => ({ ok: true, stderr }),
      (error: { stderr?: string }) => ({ ok: false, stderr: error.stderr ?? '' }),
    );
    assert.ok(result.ok, `${name} does not validate against firehose.rng:\n${result.stderr}\n${xml}`);
  };

  it('validates against firehose.rng with warnings with and without a column, a function and hostile text', async () => {
    const warnings = createWarningCollector();
    for (const line of [
      'hello.c: In function ‘main’:',
      'hello.c:2:22: warning: unused variable ‘x’ [-Wunused-variable]',
      'gen.c:40: warning: "<a & b>" \u0001 "quoted" [-Wformat=]',
      'ld.c:7: warning: no column and no option',
    ]) {
      warnings.line(line);
    }
    assert.equal(warnings.warnings.length, 3);
    const xml = firehoseXml({
      generatorVersion: '0.6.4',
      source: 'hello',
      version: '1:2.10-3',
      wallClockSeconds: 12.3456,
      warnings: warnings.warnings,
    });
    await validate('warnings.xml', xml);
    // Every point has a column: firehose's Point.from_xml (Laniakea's dud.get_firehose()) fails without one.
    const points = xml.match(/<point [^>]*\/>/g) ?? [];
    assert.equal(points.length, 3);
    for (const point of points) assert.match(point, /^<point line="\d+" column="\d+"\/>$/);
    assert.match(xml, /<point line="40" column="0"\/>/);
    assert.match(xml, /<debian-source name="hello" version="1:2.10" release="3"\/>/);
  });

  it('validates for a native version, no warnings and a build that never ran', async () => {
    await validate(
      'empty.xml',
      firehoseXml({ generatorVersion: '0.6.4', source: 'native', version: '1.0', wallClockSeconds: null, warnings: [] }),
    );
  });
});
