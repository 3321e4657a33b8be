import assert from 'node:assert/strict';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { curveKeyPair, Request } from 'zeromq';
import { formatCurveKeyFile } from '@spark/keys';
import { loadJobsFile, startLighthouseStandIn, type LighthouseStandIn } from '@spark/testing';

const identity = { machine_name: 'hydrogen', machine_id: '2b1ba1a9-7a8e-5c1f-8f5e-0e4a3e4e7f10' };
const JOB = {
  uuid: '7f9c4a56-1d2e-4b3c-8a9b-0c1d2e3f4a5b',
  module: 'core',
  kind: 'package-build',
  version: '1.0-1',
  architecture: 'amd64',
  time_created: '2026-11-26T00:00:00',
  repo: 'master',
  data: {},
};

function client(serverKey: string, keys: { publicKey: string; secretKey: string }, endpoint: string): Request {
  const socket = new Request({
    linger: 0,
    receiveTimeout: 1500,
    curveServerKey: serverKey,
    curvePublicKey: keys.publicKey,
    curveSecretKey: keys.secretKey,
  });
  socket.connect(endpoint);
  return socket;
}

async function ask(socket: Request, request: Record<string, unknown>): Promise<string> {
  await socket.send(JSON.stringify({ ...identity, ...request }));
  const [reply] = await socket.receive();
  return reply?.toString() ?? '';
}

describe('lighthouse stand-in', () => {
  const server = curveKeyPair();
  const worker = curveKeyPair();
  let trusted: string;
  let standIn: LighthouseStandIn;

  before(async () => {
    trusted = await mkdtemp(join(tmpdir(), 'spark-trusted-'));
    await writeFile(
      join(trusted, 'hydrogen.pub.key'),
      formatCurveKeyFile({
        metadata: { id: 'hydrogen' },
        curvePublicKey: worker.publicKey,
        curveSecretKey: null,
        edVerifyKey: null,
        edSigningKey: null,
      }),
    );
    standIn = await startLighthouseStandIn({ serverKeys: server, trustedKeysDir: trusted, jobs: [JOB] });
  });
  after(async () => {
    standIn.close();
    await rm(trusted, { recursive: true, force: true });
  });

  it('answers a trusted worker over CURVE and moves a job through the states of jobs_worker.py', async () => {
    const socket = client(server.publicKey, worker, standIn.endpoint);
    try {
      assert.deepEqual(JSON.parse(await ask(socket, { request: 'archive-info' })), {
        archive_repos: { master: { upload_fqdn: 'archive.example.org/_upload', upload_method: 'https' } },
      });
      const request = { request: 'job', owner: '', accepts: ['os-image-build'], architectures: ['amd64'] };
      assert.equal(await ask(socket, request), 'null');
      assert.deepEqual(JSON.parse(await ask(socket, { ...request, accepts: ['package-build'] })), JOB);
      assert.equal(standIn.board.get(JOB.uuid)?.status, 'SCHEDULED');
      assert.equal(await ask(socket, { ...request, accepts: ['package-build'] }), 'null');
      assert.equal(await ask(socket, { request: 'job-accepted', uuid: JOB.uuid }), 'true');
      assert.equal(standIn.board.get(JOB.uuid)?.status, 'RUNNING');
      assert.equal(await ask(socket, { request: 'job-status', uuid: JOB.uuid, log_excerpt: 'building' }), '');
      assert.equal(standIn.board.get(JOB.uuid)?.logExcerpt, 'building');
      assert.equal(await ask(socket, { request: 'job-rejected', uuid: JOB.uuid }), 'true');
      assert.equal(standIn.board.get(JOB.uuid)?.status, 'WAITING');
      assert.deepEqual(JSON.parse(await ask(socket, { ...request, accepts: ['package-build'] })), JOB);
      assert.equal(await ask(socket, { request: 'job-failed', uuid: JOB.uuid }), 'true');
      assert.deepEqual([standIn.board.get(JOB.uuid)?.status, standIn.board.get(JOB.uuid)?.result], ['DONE', 'failure']);
      assert.deepEqual(JSON.parse(await ask(socket, { request: 'job-success', uuid: '00000000-0000-4000-8000-000000000000' })), {
        error: 'Unable to find job with the requested ID.',
      });
      assert.deepEqual(
        standIn.requests.map((r) => r.request),
        ['archive-info', 'job', 'job', 'job', 'job-accepted', 'job-status', 'job-rejected', 'job', 'job-failed', 'job-success'],
      );
      assert.equal(standIn.requests[0]?.['machine_name'], 'hydrogen');
    } finally {
      socket.close();
    }
  });

  it('refuses a worker whose key is not in the trusted-keys directory (ZAP)', async () => {
    const stranger = curveKeyPair();
    const before = standIn.requests.length;
    const socket = client(server.publicKey, stranger, standIn.endpoint);
    try {
      await assert.rejects(ask(socket, { request: 'archive-info' }), /Socket temporarily unavailable|timed out|EAGAIN/i);
      assert.ok(standIn.refused.includes(stranger.publicKey), 'the ZAP handler saw and refused the key');
      assert.equal(standIn.requests.length, before, 'no request got through');
    } finally {
      socket.close();
    }
  });

  it('answers with a frame set by the test, for hostile-reply tests', async () => {
    standIn.replyNext('job', '{"uuid": "../../etc"}');
    const socket = client(server.publicKey, worker, standIn.endpoint);
    try {
      assert.equal(await ask(socket, { request: 'job', owner: '', accepts: [], architectures: [] }), '{"uuid": "../../etc"}');
    } finally {
      socket.close();
    }
  });

  it('loads jobs from a JSON file, and names the file and job when one is unusable', async () => {
    const file = join(trusted, 'jobs.json');
    await writeFile(file, JSON.stringify([JOB]));
    assert.deepEqual(await loadJobsFile(file), [JOB]);
    await writeFile(file, JSON.stringify([JOB, { uuid: 'x' }]));
    await assert.rejects(loadJobsFile(file), { message: `${file}: job 1 needs string uuid, kind and architecture` });
  });
});
