import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { promisify } from 'node:util';
import type { ArchiveTarget } from '@spark/protocol';
import { dputUploadUrl } from '@spark/service';
import { startFakeUploadWorld, type FakeUploadWorld } from './fake-upload-world.js';
import { makeSignedJob, makeSigningKey } from './signed-job.js';

const run = promisify(execFile);

/** dput-ng's own URL forming (dput/uploaders/http.py), run by Debian's python3 for each profile. */
async function dputBaseUrls(profiles: { fqdn: string; method: string; incoming: string }[]): Promise<string[]> {
  const script = `
import json, sys
from dput.uploaders.http import HTTPUploader
class Quiet:
    def shutdown(self): pass
out = []
for p in json.load(sys.stdin):
    u = HTTPUploader.__new__(HTTPUploader)
    u.interface = Quiet()
    u._config = dict(p)
    u.initialize()
    out.append(u._baseurl)
print(json.dumps(out))
`;
  const child = execFile('/usr/bin/python3', ['-c', script]);
  child.stdin?.end(JSON.stringify(profiles));
  let stdout = '';
  child.stdout?.on('data', (chunk: Buffer) => (stdout += chunk.toString()));
  const code = await new Promise<number | null>((resolve) => child.on('exit', resolve));
  assert.equal(code, 0);
  return JSON.parse(stdout) as string[];
}

describe('dput-ng compatibility', () => {
  /** The uploader's job logic on in-memory records (fake-upload-world.ts), against a real receiver. */
  let h: FakeUploadWorld;
  let gnupgHome: string;
  let home: string;

  before(async () => {
    [h, gnupgHome] = await Promise.all([startFakeUploadWorld(), makeSigningKey()]);
    home = await mkdtemp(join(tmpdir(), 'spark-dput-home-'));
  });
  after(async () => {
    await h.close();
    await rm(gnupgHome, { recursive: true, force: true });
    await rm(home, { recursive: true, force: true });
  });

  it('forms the same URLs as dput-ng for hosts with ports, paths and trailing slashes', async () => {
    const cases: { target: ArchiveTarget; repo: string }[] = [
      { target: { upload_fqdn: 'Laniakea.Example.org/_upload', upload_method: 'https' }, repo: 'master' },
      { target: { upload_fqdn: 'archive.example.org:8080/_upload', upload_method: 'http' }, repo: 'extra' },
      { target: { upload_fqdn: 'archive.example.org', upload_method: 'https' }, repo: 'master' },
      { target: { upload_fqdn: 'archive.example.org/', upload_method: 'https' }, repo: 'master' },
      { target: { upload_fqdn: 'archive.example.org:0443/a/b', upload_method: 'https' }, repo: 'r-1.x' },
    ];
    const theirs = await dputBaseUrls(
      cases.map(({ target, repo }) => ({ fqdn: target.upload_fqdn, method: target.upload_method, incoming: repo })),
    );
    assert.deepEqual(
      cases.map(({ target, repo }) => dputUploadUrl(target, repo, 'hello_1.0-1.dsc')),
      theirs.map((base) => `${base}hello_1.0-1.dsc`),
    );
  });

  it(
    "PUTs the same URLs as real dput run on the .changes and then the .dud, as spark does, in that order but with the .changes after the .dud's files",
    { timeout: 60_000 },
    async () => {
      const job = await makeSignedJob(gnupgHome, h.workspacesDir, h.logsDir);
      const dputArchive = join(h.root, 'dput-archive');
      await mkdir(dputArchive);
      h.receiver.options.dir = dputArchive;
      // The profile spark writes (as laniakea-spark writes it), but unsigned uploads allowed: the throwaway key is in no keyring dput checks.
      const dputCf = join(home, 'dput.cf');
      await writeFile(
        dputCf,
        `[laniakea]\nfqdn = ${h.target.upload_fqdn}\nmethod = ${h.target.upload_method}\nincoming = master\nlogin = anonymous\nallow_unsigned_uploads = 1\n`,
      );
      for (const control of [job.manifest.changes as string, job.manifest.dud]) {
        await run('dput', ['--no-upload-log', '-c', dputCf, 'laniakea', join(job.artifactsDir, control)], {
          env: { ...process.env, HOME: home },
        });
      }
      const byDput = h.receiver.requests.splice(0);
      assert.equal(byDput.length, job.contents.size);

      h.receiver.options.dir = h.archiveDir;
      assert.deepEqual(await h.upload(job.manifest), { result: 'uploaded', report: 'success' });
      // Both control files last: a file found not to be what was signed stops the upload before either goes out.
      const changesAt = byDput.findIndex((r) => r.url.endsWith('.changes'));
      const changesLast = [...byDput.slice(0, changesAt), ...byDput.slice(changesAt + 1, -1), byDput[changesAt], byDput.at(-1)];
      assert.ok(changesAt >= 0 && changesAt < byDput.length - 2);
      assert.deepEqual(h.receiver.requests, changesLast);
      for (const [name, data] of job.contents) {
        assert.deepEqual(await readFile(join(h.archiveDir, 'master', name)), await readFile(join(dputArchive, 'master', name)), name);
        assert.deepEqual(await readFile(join(h.archiveDir, 'master', name)), data, name);
      }
    },
  );
});
