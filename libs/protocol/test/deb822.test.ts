import assert from 'node:assert/strict';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import {
  Deb822Paragraph,
  formatFileList,
  parseControlFile,
  parseDeb822,
  parseFileList,
  splitClearsigned,
  writeDeb822,
} from '@spark/protocol';
import { buildBinaryLocally, makeSourcePackage } from '@spark/testing';

describe('deb822 on real dpkg-made files', () => {
  let dir: string;
  let dscText: string;
  let changesText: string;
  let buildinfoText: string;

  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'spark-deb822-'));
    const spec = { name: 'hello-spark', version: '1.0' };
    const pkg = await makeSourcePackage(dir, spec);
    const changes = await buildBinaryLocally(pkg, spec);
    dscText = await readFile(pkg.dsc, 'utf8');
    changesText = await readFile(changes, 'utf8');
    buildinfoText = await readFile(changes.replace(/\.changes$/, '.buildinfo'), 'utf8');
  });
  after(() => rm(dir, { recursive: true, force: true }));

  for (const [name, text] of [
    ['.dsc', () => dscText],
    ['.changes', () => changesText],
    ['.buildinfo', () => buildinfoText],
  ] as const) {
    it(`writes a dpkg-made ${name} back byte for byte`, () => {
      const paragraphs = parseDeb822(text());
      assert.equal(writeDeb822(paragraphs), text());
      assert.deepEqual(parseDeb822(writeDeb822(paragraphs)), paragraphs);
    });
  }

  it('reads the .changes file lists with section and priority', () => {
    const [changes] = parseDeb822(changesText);
    assert.ok(changes);
    const files = parseFileList(changes.get('Files'));
    assert.deepEqual(
      files.map((f) => [f.name, f.section, f.priority]),
      [
        ['hello-spark_1.0_amd64.buildinfo', 'misc', 'optional'],
        ['hello-spark_1.0_amd64.deb', 'misc', 'optional'],
      ],
    );
    const sha256 = parseFileList(changes.get('Checksums-Sha256'));
    assert.equal(sha256.length, 2);
    assert.match(sha256[0]?.digest ?? '', /^[0-9a-f]{64}$/);
    assert.equal(formatFileList(files), changes.get('files'));
    assert.equal(formatFileList(sha256), changes.get('Checksums-Sha256'));
  });

  it('keeps multi-line fields such as Changes with their "." lines', () => {
    const [changes] = parseDeb822(changesText);
    assert.match(changes?.get('Changes') ?? '', /^\nhello-spark \(1\.0\) bookworm; urgency=medium\n\.\n {2}\* Test upload\.$/);
  });

  it('reads the .dsc Files list (digest size name)', () => {
    const [dsc] = parseDeb822(dscText);
    const files = parseFileList(dsc?.get('Files'));
    assert.equal(files.length, 1);
    assert.equal(files[0]?.name, 'hello-spark_1.0.tar.xz');
    assert.equal(files[0]?.section, undefined);
  });
});

describe('deb822 parsing', () => {
  it('compares field names case-insensitively and keeps order on set', () => {
    const p = new Deb822Paragraph([
      ['Format', '1.8'],
      ['Source', 'hello'],
    ]);
    p.set('source', 'bye');
    assert.deepEqual(
      p.fields.map((f) => f.name),
      ['Format', 'Source'],
    );
    assert.equal(p.get('SOURCE'), 'bye');
    assert.equal(p.delete('format'), true);
    assert.equal(writeDeb822([p]), 'Source: bye\n');
  });

  it('names the line of a syntax error', () => {
    assert.throws(() => parseDeb822('Source: x\n continued\nnot a field\n'), /^Deb822Error: line 3: expected "Field: value"/);
    assert.throws(() => parseDeb822(' leading continuation\n'), /line 1: continuation line without a field/);
    assert.throws(() => parseDeb822('Source: a\nSource: b\n'), /line 2: field Source appears twice/);
  });

  it('refuses malformed file list lines', () => {
    assert.throws(() => parseFileList('\nabc notasize name'), /malformed file list line/);
    assert.throws(() => parseFileList('\nabc 12 a b'), /malformed file list line/);
  });
});

describe('clearsigned control files', () => {
  const signed = `-----BEGIN PGP SIGNED MESSAGE-----
Hash: SHA512

Format: 1.8
Source: hello
Description:
- -- dash-escaped line
Files:
 d41d8cd98f00b204e9800998ecf8427e 0 misc optional hello_1.0_amd64.deb
-----BEGIN PGP SIGNATURE-----

iQEzBAEBCgAdFiEEexample=
=abcd
-----END PGP SIGNATURE-----
`;

  it('reads the signed text, undoing dash-escaping, and keeps the signature block', () => {
    const parts = splitClearsigned(signed);
    assert.ok(parts);
    assert.deepEqual(parts.hashes, ['SHA512']);
    assert.equal(parts.text.split('\n')[2], 'Description:');
    assert.equal(parts.text.split('\n')[3], '-- dash-escaped line');
    assert.match(parts.signature, /^-----BEGIN PGP SIGNATURE-----\n[\s\S]*-----END PGP SIGNATURE-----\n$/);
  });

  it('parses a clearsigned file as its paragraphs', () => {
    const { paragraphs, clearsigned } = parseControlFile(signed.replace('- -- dash-escaped line', ' summary'));
    assert.ok(clearsigned);
    assert.equal(paragraphs[0]?.get('Source'), 'hello');
    assert.equal(paragraphs[0]?.get('Description'), '\nsummary');
  });

  it('returns null for an unsigned file and refuses a cut-off signature', () => {
    assert.equal(splitClearsigned('Source: x\n'), null);
    assert.throws(() => splitClearsigned(signed.replace(/-----END PGP SIGNATURE-----\n/, '')), /no complete signature block/);
  });
});
