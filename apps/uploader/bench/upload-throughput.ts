/*
 * Uploads one 1 GiB artifact through the real uploader service (a child
 * process running the built dist/main.js as installed, or src/main.ts through
 * tsx when there is no build; with its own Redis) to the upload receiver,
 * and the same file with `curl -T` to the same receiver: a warm-up, then RUNS
 * of each, interleaved; prints the median throughput of each, the uploader's
 * CPU time per upload, its peak RSS (VmHWM) and curl's. Not part of the test suite: run with
 * `npm run bench` (needs about 3 GiB free in the temp dir); with
 * SPARK_BENCH_SOURCE=1 it runs the source even when there is a build, with
 * SPARK_BENCH_MAIN=<main.js> that file (the bundle the Debian package installs:
 * `lib/node_modules/@spark/uploader/dist/main.js` of tools/package/bundle.ts). The
 * service runs with the V8 flags production gives it (nodeFlags('uploader') of @spark/config);
 * SPARK_BENCH_NODE_FLAGS='…' replaces them (empty: none).
 */
import { spawn, execFile } from 'node:child_process';
import { createHash, randomBytes, randomUUID } from 'node:crypto';
import { createWriteStream, existsSync } from 'node:fs';
import { copyFile, mkdir, mkdtemp, open, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { once } from 'node:events';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { Queue } from 'bullmq';
import { nodeFlags as productionFlags } from '@spark/config';
import { archiveTargetsKey, jobArtifactsDir, QueueName, stageJobId, type Manifest } from '@spark/protocol';
import { connectRedis, redisReady } from '@spark/service';
// A benchmark, like a test, runs on the test support and the receiver stand-in (the lint rule's test override covers test/ only).
import { machineDescription, median, procStatusKiB, randomQueuePrefix, startRedisServer, timeCommand } from '@spark/testing';
import { startUploadReceiver } from '@spark/testing';

const SIZE = 1024 ** 3;
const RUNS = 3;
const MiB = 1024 * 1024;
const main = fileURLToPath(new URL('../src/main.ts', import.meta.url));
const dist = fileURLToPath(new URL('../dist/main.js', import.meta.url));
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
  const workspacesDir = join(root, 'lkspark', 'workspaces');
  const master = join(root, 'artifact.tar');
  process.stdout.write(`writing a 1 GiB artifact in ${root} …\n`);
  const bigSha = await writeBigFile(master);
  await redis.set(
    archiveTargetsKey(prefix),
    JSON.stringify({
      archive_repos: { master: { upload_fqdn: `127.0.0.1:${receiver.port}/_upload`, upload_method: 'http' } },
      receivedAt: Date.now(),
    }),
  );
  const configFile = join(root, 'spark.toml');
  await writeFile(
    configFile,
    `LighthouseServer = 'tcp://127.0.0.1:5570'\nAcceptedJobs = ['package-build']\nGpgKeyID = 'DEADBEEF'\nMachineName = 'bench'\nWorkspaceRoot = '${join(root, 'lkspark')}'\nRedisUrl = '${redisServer.url}'\nQueuePrefix = '${prefix}'\n`,
  );

  // The built service, as installed: its RSS is the one that counts (tsx adds its own).
  const bundle = process.env['SPARK_BENCH_MAIN'];
  const command = bundle
    ? [bundle]
    : existsSync(dist) && process.env['SPARK_BENCH_SOURCE'] !== '1'
      ? [dist]
      : ['--conditions=@spark/source', '--import', 'tsx', main];
  const flagsFromEnv = process.env['SPARK_BENCH_NODE_FLAGS'];
  const nodeFlags = flagsFromEnv === undefined ? productionFlags('uploader') : flagsFromEnv.split(' ').filter(Boolean);
  const child = spawn(process.execPath, [...nodeFlags, ...command, '--config', configFile], {
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  const exited = once(child, 'exit');
  let log = '';
  child.stdout.on('data', (chunk: Buffer) => (log += chunk.toString()));
  while (!log.includes('uploader started')) {
    if (child.exitCode !== null) throw new Error(`spark-uploader exited:\n${log}`);
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
  const idleRssKiB = await procStatusKiB(child.pid ?? 0, 'VmRSS');

  // One upload job: a copy of the artifact in a fresh workspace (the uploader removes the workspace; it
  // uploads only files with one link, so not a hard link), made before the job is queued: not timed.
  // The uploader's own account of one job: from its start ("uploading …") to the big file's answer ("uploaded big…").
  const putSeconds = (uuid: string): number => {
    const lines = log
      .split('\n')
      .filter((line) => line.includes(uuid))
      .map((line) => JSON.parse(line) as { time: number; msg: string });
    const start = lines.find((line) => line.msg.startsWith('uploading '));
    const done = lines.find((line) => line.msg.startsWith('uploaded big_'));
    return start && done ? (done.time - start.time) / 1000 : NaN;
  };
  const uploadOnce = async (): Promise<{ seconds: number; putSeconds: number; received: string }> => {
    const uuid = randomUUID();
    const round = String(Date.now());
    const artifacts = jobArtifactsDir(workspacesDir, { uuid, round });
    await mkdir(artifacts, { recursive: true });
    const big = `big_1.0-1_amd64.${uuid}.tar`;
    await copyFile(master, join(artifacts, big));
    // On disk before the clock starts: the copy's write-back must not compete with the upload.
    const copy = await open(join(artifacts, big), 'r');
    await copy.sync();
    await copy.close();
    const dud = `big_1.0-1_amd64.${uuid}.dud`;
    const dudText = `Format: 1.8\nX-Spark-Job: ${uuid}\nX-Spark-Result: success\nChecksums-Sha256:\n ${bigSha} ${SIZE} ${big}\nFiles:\n 00000000000000000000000000000000 ${SIZE} spark spark ${big}\n`;
    await writeFile(join(artifacts, dud), dudText);
    const manifest: Manifest = {
      uuid,
      round,
      repo: 'master',
      result: 'success',
      files: [
        { name: big, size: SIZE, sha256: bigSha },
        { name: dud, size: Buffer.byteLength(dudText), sha256: sha256(Buffer.from(dudText)) },
      ],
      changes: null,
      dud,
    };
    const started = process.hrtime.bigint();
    await uploads.add(QueueName.upload, { manifest }, { jobId: stageJobId(manifest, 'upload') });
    let state = '';
    while (state !== 'completed') {
      state = await uploads.getJobState(stageJobId(manifest, 'upload'));
      if (state === 'failed')
        throw new Error(`upload failed: ${(await uploads.getJob(stageJobId(manifest, 'upload')))?.failedReason ?? '?'}`);
      if (state === 'delayed') {
        // A failed try waits for the next one: a benchmark has no time for that.
        throw new Error(`upload try failed: ${JSON.stringify((await uploads.getJob(stageJobId(manifest, 'upload')))?.progress)}`);
      }
      await new Promise((resolve) => setTimeout(resolve, 20));
    }
    const seconds = Number(process.hrtime.bigint() - started) / 1e9;
    const received = join(root, 'archive', 'master', big);
    if ((await stat(received)).size !== SIZE) throw new Error('the received file has the wrong size');
    return { seconds, putSeconds: putSeconds(uuid), received };
  };
  let curls = 0;
  const curlOnce = async (): Promise<{ seconds: number; peakRssKiB: number }> => {
    const name = `curl-copy-${curls++}.tar`;
    const result = await timeCommand('curl', [
      '-sS',
      '-T',
      master,
      '-o',
      '/dev/null',
      '-w',
      '%{http_code}',
      `${receiver.url}/_upload/master/${name}`,
    ]);
    if (result.stdout !== '201') throw new Error(`curl -T got ${result.stdout}`);
    await rm(join(root, 'archive', 'master', name));
    return result;
  };

  // The uploader's CPU time (user, system) in s from /proc/<pid>/stat: a figure the other work on a
  // shared machine disturbs far less than the wall time.
  const cpuSeconds = async (): Promise<[number, number]> => {
    const fields = (await readFile(`/proc/${child.pid ?? 0}/stat`, 'utf8')).replace(/^.*\) /, '').split(' ');
    return [Number(fields[11]) / 100, Number(fields[12]) / 100];
  };
  const warmUp = await uploadOnce();
  process.stdout.write('checking the received file …\n');
  const { stdout: sum } = await run('sha256sum', [warmUp.received]);
  if (!sum.startsWith(bigSha)) throw new Error('the received file differs from the artifact');
  await rm(warmUp.received);
  await curlOnce();
  const cpuBefore = await cpuSeconds();
  const uploaderRuns: number[] = [];
  const putRuns: number[] = [];
  const curlRuns: number[] = [];
  let curlPeakKiB = 0;
  for (let i = 0; i < RUNS; i++) {
    const upload = await uploadOnce();
    uploaderRuns.push(upload.seconds);
    putRuns.push(upload.putSeconds);
    await rm(upload.received);
    const curl = await curlOnce();
    curlRuns.push(curl.seconds);
    curlPeakKiB = Math.max(curlPeakKiB, curl.peakRssKiB);
  }
  const peakRssKiB = await procStatusKiB(child.pid ?? 0, 'VmHWM');
  const cpuAfter = await cpuSeconds();
  const [userPerRun, sysPerRun] = [0, 1].map((i) => ((cpuAfter[i] as number) - (cpuBefore[i] as number)) / RUNS) as [number, number];
  child.kill('SIGTERM');
  await exited;

  const mbps = (seconds: number) => SIZE / MiB / seconds;
  const runs = (list: number[]) => list.map((seconds) => seconds.toFixed(2)).join(' ');
  process.stdout.write(
    [
      `upload: 1 GiB, ${RUNS} runs after a warm-up, medians; spark-uploader from ${bundle ?? (command.length === 1 ? 'dist/' : 'src/ (tsx)')} with node flags [${nodeFlags.join(' ')}]; receiver: tools upload-receiver on 127.0.0.1 writing to ${tmpdir()}; ${await machineDescription()}`,
      `spark-uploader: ${median(uploaderRuns).toFixed(2)} s, ${mbps(median(uploaderRuns)).toFixed(0)} MiB/s (×${(mbps(median(uploaderRuns)) / mbps(median(curlRuns))).toFixed(2)} of curl; job queued → completed, incl. the .dud and report); runs ${runs(uploaderRuns)}`,
      `  of which the PUT of the 1 GiB file: ${median(putRuns).toFixed(2)} s, ${mbps(median(putRuns)).toFixed(0)} MiB/s (×${(mbps(median(putRuns)) / mbps(median(curlRuns))).toFixed(2)} of curl; from the uploader's log); runs ${runs(putRuns)}`,
      `curl -T:        ${median(curlRuns).toFixed(2)} s, ${mbps(median(curlRuns)).toFixed(0)} MiB/s; runs ${runs(curlRuns)}`,
      `CPU time of spark-uploader per 1 GiB job: ${(userPerRun + sysPerRun).toFixed(2)} s (user ${userPerRun.toFixed(2)} + system ${sysPerRun.toFixed(2)}; mean of the ${RUNS} runs)`,
      `peak RSS: spark-uploader ${(peakRssKiB / 1024).toFixed(0)} MiB (VmHWM over all runs; ${(idleRssKiB / 1024).toFixed(0)} MiB started and idle), curl ${(curlPeakKiB / 1024).toFixed(0)} MiB`,
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
