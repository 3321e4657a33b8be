/*
 * Signing throughput: verifies and signs a .changes listing 2 GiB of .debs
 * (sparse files in a temp dir: hashing costs the same for any content, and
 * sparse files keep the disk out of the figure), compares with `sha256sum`
 * over the same files, and prints the signer's peak RSS and sha256sum's.
 * A warm-up, then RUNS of each, interleaved; medians. Run: npm run bench.
 */
import { createReadStream } from 'node:fs';
import { mkdir, mkdtemp, open, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { randomUUID } from 'node:crypto';
import * as openpgp from 'openpgp';
import { jobArtifactsDir, jobRecordSchema, jobSourceDir, type NewJobRecord, type Manifest } from '@spark/protocol';
// A benchmark, like a test, runs on the test support.
import { machineDescription, median, secondsSince, timeCommand } from '@spark/testing';
import { openAuditLog } from '../src/audit-log.js';
import { digestBuffer, digestStream, systemClock } from '@spark/service';
import { signArtifacts } from '../src/sign-artifacts.js';
import { loadSigningKey } from '@spark/keys/signing-key';

const RUNS = 3;
const DEB_COUNT = 4;
const DEB_BYTES = 512 * 1024 * 1024;
const MiB = 1024 * 1024;

const tmp = await mkdtemp(join(tmpdir(), 'spark-signer-bench-'));
try {
  const { privateKey } = await openpgp.generateKey({
    type: 'rsa',
    rsaBits: 4096,
    userIDs: [{ name: 'Bench Worker', email: 'bench@example.org' }],
    format: 'armored',
  });
  const keyFile = join(tmp, 'bench_secret.gpg');
  await writeFile(keyFile, privateKey, { mode: 0o600 });
  const fingerprint = (await openpgp.readPrivateKey({ armoredKey: privateKey })).getFingerprint();
  const signingKey = await loadSigningKey({ keyFile, keyId: fingerprint, passphraseFile: null });

  const uuid = randomUUID();
  const round = String(Date.now());
  const workspacesDir = join(tmp, 'workspaces');
  const dir = jobArtifactsDir(workspacesDir, { uuid, round });
  await mkdir(dir, { recursive: true });
  const debs = Array.from({ length: DEB_COUNT }, (_, i) => `bench${i}_1.0_amd64.deb`);
  for (const name of debs) {
    const handle = await open(join(dir, name), 'w');
    await handle.truncate(DEB_BYTES);
    await handle.close();
  }
  // All .debs are the same zeros: hash one for the .changes.
  const debDigests = await digestStream(createReadStream(join(dir, debs[0] ?? '')));
  const packages = debs.map((d) => d.split('_')[0] ?? '');
  // The .dsc the builder keeps for the signer: its Binary field says which packages the job may upload.
  const dsc = Buffer.from(`Format: 3.0 (native)\nSource: bench\nBinary: ${packages.join(', ')}\nArchitecture: any\nVersion: 1.0\n`);
  const sourceDir = jobSourceDir(workspacesDir, { uuid, round });
  await mkdir(sourceDir, { recursive: true });
  await writeFile(join(sourceDir, 'bench_1.0.dsc'), dsc);
  const buildinfoName = 'bench_1.0_amd64.buildinfo';
  const debList = (digest: 'md5' | 'sha1' | 'sha256') => debs.map((name) => ` ${debDigests[digest]} ${debDigests.size} ${name}`);
  const buildinfo = Buffer.from(
    [
      'Format: 1.0',
      'Source: bench',
      `Binary: ${packages.join(' ')}`,
      'Architecture: amd64',
      'Version: 1.0',
      'Checksums-Md5:',
      ...debList('md5'),
      'Checksums-Sha1:',
      ...debList('sha1'),
      'Checksums-Sha256:',
      ...debList('sha256'),
      'Build-Architecture: amd64',
      '',
    ].join('\n'),
  );
  await writeFile(join(dir, buildinfoName), buildinfo);
  const biDigests = digestBuffer(buildinfo);
  const listed = [...debs.map((name) => ({ name, d: debDigests })), { name: buildinfoName, d: biDigests }];
  const changesName = 'bench_1.0_amd64.changes';
  const changes = Buffer.from(
    [
      'Format: 1.8',
      'Date: Thu, 26 Nov 2026 00:00:00 +0000',
      'Source: bench',
      `Binary: ${packages.join(' ')}`,
      'Architecture: amd64',
      'Version: 1.0',
      'Distribution: bookworm',
      'Checksums-Sha1:',
      ...listed.map(({ name, d }) => ` ${d.sha1} ${d.size} ${name}`),
      'Checksums-Sha256:',
      ...listed.map(({ name, d }) => ` ${d.sha256} ${d.size} ${name}`),
      'Files:',
      ...listed.map(({ name, d }) => ` ${d.md5} ${d.size} misc optional ${name}`),
      '',
    ].join('\n'),
  );
  await writeFile(join(dir, changesName), changes);
  const dudName = 'bench_1.0_amd64.dud';
  const dud = Buffer.from(
    `Format: 1.8\nArchitecture: amd64\nX-Spark-Job: ${uuid}\nX-Spark-Result: success\nFiles:\n ${biDigests.md5} ${biDigests.size} spark spark ${buildinfoName}\n`,
  );
  await writeFile(join(dir, dudName), dud);
  const manifest: Manifest = {
    uuid,
    round,
    repo: 'master',
    result: 'success',
    files: [
      ...listed.map(({ name, d }) => ({ name, size: d.size, sha256: d.sha256 })),
      { name: changesName, size: changes.length, sha256: digestBuffer(changes).sha256 },
      { name: dudName, size: dud.length, sha256: digestBuffer(dud).sha256 },
    ],
    changes: changesName,
    dud: dudName,
  };
  // What the connector recorded when Lighthouse handed the job out: the signer signs only what matches it.
  const record: NewJobRecord = {
    uuid,
    round,
    kind: 'package-build',
    architecture: 'amd64',
    repo: 'master',
    package: 'bench',
    version: '1.0',
    suite: 'bookworm',
    doIndep: false,
    dscName: 'bench_1.0.dsc',
    dscSha256: digestBuffer(dsc).sha256,
    receivedAt: Number(round),
  };
  const totalBytes = manifest.files.reduce((sum, entry) => sum + entry.size, 0);
  const audit = await openAuditLog(join(tmp, 'audit', 'signer.log'));

  const rssBefore = process.resourceUsage().maxRSS;
  // Signing again is what a retried sign job does: the signer kept the originals and verifies those.
  const sign = async () => {
    const start = process.hrtime.bigint();
    await signArtifacts({ workspacesDir, signingKey, audit, clock: systemClock }, manifest, {
      record: jobRecordSchema.parse(record),
      uploadTarget: null,
    });
    return secondsSince(start);
  };
  const sha256sum = () =>
    timeCommand(
      'sha256sum',
      debs.map((name) => join(dir, name)),
    );
  await sign();
  await sha256sum();
  const signRuns: number[] = [];
  const shaRuns: number[] = [];
  let shaPeakKiB = 0;
  for (let i = 0; i < RUNS; i++) {
    signRuns.push(await sign());
    const sha = await sha256sum();
    shaRuns.push(sha.seconds);
    shaPeakKiB = Math.max(shaPeakKiB, sha.peakRssKiB);
  }
  const rssPeak = process.resourceUsage().maxRSS;

  const rate = (seconds: number) => totalBytes / MiB / seconds;
  const runs = (list: number[]) => list.map((seconds) => seconds.toFixed(2)).join(' ');
  process.stdout.write(
    [
      `signing: ${RUNS} runs after a warm-up, medians; ${await machineDescription()}`,
      `signer: verified (size, MD5, SHA-1, SHA-256) and signed a .changes listing ${(totalBytes / MiB).toFixed(0)} MiB: ${median(signRuns).toFixed(2)} s, ${rate(median(signRuns)).toFixed(0)} MiB/s (×${(rate(median(signRuns)) / rate(median(shaRuns))).toFixed(2)} of sha256sum); runs ${runs(signRuns)}`,
      `sha256sum over the same .debs: ${median(shaRuns).toFixed(2)} s, ${rate(median(shaRuns)).toFixed(0)} MiB/s; runs ${runs(shaRuns)}`,
      `peak RSS: signer ${(rssPeak / 1024).toFixed(0)} MiB (${(rssBefore / 1024).toFixed(0)} MiB before signing), sha256sum ${(shaPeakKiB / 1024).toFixed(1)} MiB`,
      '',
    ].join('\n'),
  );
} finally {
  await rm(tmp, { recursive: true, force: true });
}
