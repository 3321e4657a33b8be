/*
 * Uploads one 1 GiB artifact through the real uploader service (a child
 * process running src/main.ts, with its own Redis) to the upload receiver,
 * then the same file with `curl -T` to the same receiver, and prints the
 * throughput of each and the uploader's peak RSS (VmHWM). Not part of the
 * test suite: run with `npm run bench` (needs about 3 GiB free in the temp dir).
 */
import { spawn, execFile } from 'node:child_process';
import { createHash, randomBytes, randomUUID } from 'node:crypto';
import { createWriteStream } from 'node:fs';
import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { once } from 'node:events';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { Queue } from 'bullmq';
import { archiveTargetsKey, jobArtifactsDir, QueueName, stageJobId, type Manifest } from '@spark/protocol';
import { connectRedis, redisReady } from '@spark/service';
// A benchmark, like a test, runs on the test support and the receiver stand-in (the lint rule's test override covers test/ only).
import { randomQueuePrefix, startRedisServer } from '@spark/testing';
import { startUploadReceiver } from '@spark/tools';

const SIZE = 1024 ** 3;
const MiB = 1024 * 1024;
const main = fileURLToPath(new URL('../src/main.ts', import.meta.url));
const run = promisify(execFile);

async function writeBigFile(path: string): Promise<string> {
  const block = randomBytes(MiB);
  const hash = createHash('sha256');
  const out = createWriteStream(path);
  for (let i = 0; i < SIZE / MiB; i++) {
    hash.update(block);
    if (!out.write(block)) await once(out, 'drain');
  }
  out.end();
  await once(out, 'finish');
  return hash.digest('hex');
}

function sha256(data: Buffer): string {
  return createHash('sha256').update(data).digest('hex');
}

const root = await mkdtemp(join(tmpdir(), 'spark-bench-'));
const redisServer = await startRedisServer();
const redis = connectRedis(redisServer.url, 'worker');
const prefix = randomQueuePrefix();
const receiver = await startUploadReceiver({ dir: join(root, 'archive'), repos: ['master'], pathPrefix: '/_upload' });
const uploads = new Queue(QueueName.upload, { connection: redis, prefix });
try {
  await redisReady(redis);
  const uuid = randomUUID();
  const artifacts = jobArtifactsDir(join(root, 'lkspark', 'workspaces'), uuid);
  await mkdir(artifacts, { recursive: true });
  const big = `big_1.0-1_amd64.${uuid}.tar`;
  process.stdout.write(`writing a 1 GiB artifact in ${artifacts} …\n`);
  const bigSha = await writeBigFile(join(artifacts, big));
  const dud = `big_1.0-1_amd64.${uuid}.dud`;
  const dudText = `Format: 1.8\nX-Spark-Job: ${uuid}\nX-Spark-Result: success\nFiles:\n 00000000000000000000000000000000 ${SIZE} spark spark ${big}\n`;
  await writeFile(join(artifacts, dud), dudText);
  const manifest: Manifest = {
    uuid,
    repo: 'master',
    result: 'success',
    files: [
      { name: big, size: SIZE, sha256: bigSha },
      { name: dud, size: Buffer.byteLength(dudText), sha256: sha256(Buffer.from(dudText)) },
    ],
    changes: null,
    dud,
  };
  await redis.set(archiveTargetsKey(prefix), JSON.stringify({ archive_repos: { master: { upload_fqdn: `127.0.0.1:${receiver.port}/_upload`, upload_method: 'http' } }, receivedAt: Date.now() }));
  const configFile = join(root, 'spark.toml');
  await writeFile(
    configFile,
    `LighthouseServer = 'tcp://127.0.0.1:5570'\nAcceptedJobs = ['package-build']\nGpgKeyID = 'DEADBEEF'\nMachineName = 'bench'\nWorkspaceRoot = '${join(root, 'lkspark')}'\nRedisUrl = '${redisServer.url}'\nQueuePrefix = '${prefix}'\n`,
  );

  const child = spawn(process.execPath, ['--conditions=@spark/source', '--import', 'tsx', main, '--config', configFile], { stdio: ['ignore', 'pipe', 'inherit'] });
  const exited = once(child, 'exit');
  let log = '';
  child.stdout.on('data', (chunk: Buffer) => (log += chunk.toString()));
  while (!log.includes('uploader started')) {
    if (child.exitCode !== null) throw new Error(`spark-uploader exited:\n${log}`);
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
  const idleRssKiB = Number(/VmRSS:\s+(\d+) kB/.exec(await readFile(`/proc/${child.pid ?? 0}/status`, 'utf8'))?.[1] ?? NaN);
  const started = Date.now();
  await uploads.add(QueueName.upload, { manifest }, { jobId: stageJobId(uuid, 'upload') });
  let state = '';
  while (state !== 'completed') {
    state = await uploads.getJobState(stageJobId(uuid, 'upload'));
    if (state === 'failed') throw new Error(`upload failed: ${(await uploads.getJob(stageJobId(uuid, 'upload')))?.failedReason ?? '?'}`);
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
  const uploaderSeconds = (Date.now() - started) / 1000;
  const status = await readFile(`/proc/${child.pid ?? 0}/status`, 'utf8');
  const peakRssKiB = Number(/VmHWM:\s+(\d+) kB/.exec(status)?.[1] ?? NaN);
  child.kill('SIGTERM');
  await exited;
  const received = join(root, 'archive', 'master', big);
  process.stdout.write('checking the received file …\n');
  const { stdout: sum } = await run('sha256sum', [received]);
  if (!sum.startsWith(bigSha)) throw new Error('the received file differs from the artifact');
  await rm(received);

  // The uploader removed the workspace; curl sends a copy of the same bytes.
  const copy = join(root, 'curl-copy.tar');
  await writeBigFile(copy);
  const curlStarted = Date.now();
  const { stdout: code } = await run('curl', ['-sS', '-T', copy, '-o', '/dev/null', '-w', '%{http_code}', `${receiver.url}/_upload/master/curl-copy.tar`]);
  const curlSeconds = (Date.now() - curlStarted) / 1000;
  if (code !== '201') throw new Error(`curl -T got ${code}`);

  const mbps = (seconds: number) => (SIZE / MiB / seconds).toFixed(0);
  process.stdout.write(
    [
      `file: 1 GiB, receiver: tools upload-receiver on 127.0.0.1 writing to ${tmpdir()}`,
      `spark-uploader: ${uploaderSeconds.toFixed(2)} s, ${mbps(uploaderSeconds)} MiB/s (job queued → completed, incl. the .dud and report)`,
      `curl -T:        ${curlSeconds.toFixed(2)} s, ${mbps(curlSeconds)} MiB/s`,
      `spark-uploader RSS: ${(idleRssKiB / 1024).toFixed(0)} MiB started and idle, ${(peakRssKiB / 1024).toFixed(0)} MiB peak (VmHWM) over the whole run`,
      '',
    ].join('\n'),
  );
} finally {
  await uploads.close();
  await receiver.close();
  await redis.quit();
  await redisServer.stop();
  await rm(root, { recursive: true, force: true });
}
