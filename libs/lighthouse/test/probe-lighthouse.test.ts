import assert from 'node:assert/strict';
import { chmod, mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { curveKeyPair } from 'zeromq';
import { parseConfig } from '@spark/config';
import { formatCurveKeyFile } from '@spark/keys';
import { startLighthouseStandIn, type LighthouseStandIn } from '@spark/testing';
import { probeLighthouse } from '@spark/lighthouse';

type KeyPair = { publicKey: string; secretKey: string };

async function writeKeyFile(file: string, keys: KeyPair, secret: boolean): Promise<void> {
  await mkdir(join(file, '..'), { recursive: true });
  const text = formatCurveKeyFile({
    metadata: { id: 'test' },
    curvePublicKey: keys.publicKey,
    curveSecretKey: secret ? keys.secretKey : null,
    edVerifyKey: null,
    edSigningKey: null,
  });
  await writeFile(file, text);
  await chmod(file, secret ? 0o600 : 0o644);
}

describe('probeLighthouse', () => {
  let dir: string;
  let standIn: LighthouseStandIn;
  const server = curveKeyPair();
  const worker = curveKeyPair();
  const config = (endpoint: string, keysDir = join(dir, 'curve')) =>
    parseConfig(
      `LighthouseServer = '${endpoint}'\nAcceptedJobs = ['package-build']\nGpgKeyID = 'DEADBEEF'\nMachineName = 'hydrogen'\nCurveKeysDir = '${keysDir}'\n[connector]\nReplyTimeout = 1\n`,
      join(dir, 'spark.toml'),
    ).config;

  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'spark-probe-'));
    await writeKeyFile(join(dir, 'curve', 'secret', 'hydrogen-spark_private.sec'), worker, true);
    await writeKeyFile(join(dir, 'curve', 'hydrogen_lighthouse-server.pub'), server, false);
    await mkdir(join(dir, 'trusted'));
    standIn = await startLighthouseStandIn({
      serverKeys: server,
      trustedKeysDir: join(dir, 'trusted'),
      archiveRepos: { master: { upload_fqdn: 'archive.example.org/_upload', upload_method: 'https' } },
    });
  });
  after(async () => {
    standIn.close();
    await rm(dir, { recursive: true, force: true });
  });

  it("says Lighthouse refused this worker's key when it is not trusted (a key problem, not an outage)", async () => {
    const probe = await probeLighthouse(config(standIn.endpoint));
    assert.equal(probe.ok, false);
    assert.equal(!probe.ok && probe.kind, 'keys');
    assert.match(!probe.ok ? probe.problem : '', /Lighthouse refused this worker's Curve key \(ZAP status 400\)/);
  });

  it('asks archive-info with the identity fields and returns the upload targets once the key is trusted', async () => {
    await writeKeyFile(join(dir, 'trusted', 'hydrogen.pub.key'), worker, false);
    const probe = await probeLighthouse(config(standIn.endpoint));
    assert.ok(probe.ok, JSON.stringify(probe));
    assert.deepEqual(probe.archiveInfo.archive_repos, { master: { upload_fqdn: 'archive.example.org/_upload', upload_method: 'https' } });
    const last = standIn.requests.at(-1);
    assert.equal(last?.request, 'archive-info');
    assert.equal(last?.['machine_name'], 'hydrogen');
  });

  it('says Lighthouse is unreachable when nothing listens, and a key file is unusable before sending anything', async () => {
    const down = await probeLighthouse(config('tcp://127.0.0.1:1'));
    assert.deepEqual(down.ok ? null : [down.kind, /cannot connect/.test(down.problem)], ['unreachable', true]);
    const noKeys = await probeLighthouse(config(standIn.endpoint, join(dir, 'nowhere')));
    assert.deepEqual(noKeys.ok ? null : [noKeys.kind, /cannot read the worker's Curve secret key: file not found/.test(noKeys.problem)], [
      'keys',
      true,
    ]);
  });
});
