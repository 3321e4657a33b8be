/*
 * The uploader as a process (src/main.ts): its flags, its config errors and
 * signals, and a kill in the middle of a job followed by a restart.
 */
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';
import { reportJobId, stageJobId } from '@spark/protocol';
import {
  nodeEntryArgs,
  randomQueuePrefix,
  type RedisServer,
  runTsEntry,
  startRedisServer,
  startServiceProcess,
  waitFor,
} from '@spark/testing';
import { startHarness, type Harness } from './harness.js';
import { expectedOrder, makeSignedJob, makeSigningKey } from './signed-job.js';

const main = fileURLToPath(new URL('../src/main.ts', import.meta.url));

describe('spark-uploader main', () => {
  let dir: string;
  let redis: RedisServer;
  const toml = (redisUrl: string, extra = '') =>
    `LighthouseServer = 'tcp://127.0.0.1:5570'\nAcceptedJobs = ['package-build']\nGpgKeyID = 'DEADBEEF'\nWorkspaceRoot = '${join(dir, 'root')}'\nRedisUrl = '${redisUrl}'\nQueuePrefix = '${randomQueuePrefix()}'\n[uploader]\nMetricsPort = 0\n${extra}`;

  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'spark-uploader-main-'));
    redis = await startRedisServer();
  });
  after(async () => {
    await redis.stop();
    await rm(dir, { recursive: true, force: true });
  });

  it('answers --version and --help with exit 0 without a config or Redis', async () => {
    const version = await runTsEntry(main, ['--version', '--config', '/nonexistent/spark.toml']);
    assert.equal(version.code, 0, version.stderr);
    assert.match(version.stdout, /^spark-uploader 0\.1\.0( \(commit [0-9a-f]{40}\))?\n$/);
    const help = await runTsEntry(main, ['-h']);
    assert.equal(help.code, 0, help.stderr);
    assert.match(help.stdout, /^usage: spark-uploader \[--config FILE\]$/m);
    assert.match(help.stdout, /^ {2}SSL_CERT_FILE +CA bundle/m);
    assert.match(help.stdout, /^ {2}SPARK_LOG_LEVEL /m);
    assert.match(help.stdout, /^ {2}SPARK_LOG_FORMAT +log lines, text or json/m);
  });

  it('exits 66 naming the file when the config is missing', async () => {
    const result = await runTsEntry(main, ['--config', '/nonexistent/spark.toml']);
    assert.equal(result.code, 66);
    assert.equal(result.stderr, '/nonexistent/spark.toml: cannot read config: file not found\n');
  });

  it('exits 78 when the config does not check, SPARK_LOG_LEVEL is no level or SPARK_LOG_FORMAT no format', async () => {
    const bad = join(dir, 'bad.toml');
    await writeFile(bad, toml(redis.url, "GiveUpAfter = 'soon'\n"));
    const result = await runTsEntry(main, ['--config', bad]);
    assert.equal(result.code, 78);
    assert.match(result.stderr, /^\S+bad\.toml:\d+: uploader\.GiveUpAfter: .+\n$/);

    const good = join(dir, 'good.toml');
    await writeFile(good, toml(redis.url));
    const level = await runTsEntry(main, ['--config', good], { env: { SPARK_LOG_LEVEL: 'loud' } });
    assert.equal(level.code, 78);
    assert.equal(
      level.stderr,
      'spark-uploader: SPARK_LOG_LEVEL="loud" is not a log level; use one of fatal, error, warn, info, debug, trace, silent\n',
    );
    const format = await runTsEntry(main, ['--config', good], { env: { SPARK_LOG_FORMAT: 'logfmt' } });
    assert.equal(format.code, 78);
    assert.equal(format.stderr, 'spark-uploader: SPARK_LOG_FORMAT="logfmt" is not a log format; use one of text, json\n');
  });

  it('exits 69 when Redis does not answer at start', { timeout: 60_000 }, async () => {
    const config = join(dir, 'away.toml');
    await writeFile(config, toml('redis://127.0.0.1:1'));
    const result = await runTsEntry(main, ['--config', config]);
    assert.equal(result.code, 69, result.stdout + result.stderr);
    assert.match(result.stdout, /"msg":"cannot reach Redis at start: Redis not ready after 10000 ms[^"]*; exiting \(69\)"/);
  });

  it('on SIGHUP keeps running, names the keys that need a restart, applies LogLevel', { timeout: 60_000 }, async () => {
    const config = join(dir, 'spark.toml');
    await writeFile(config, toml(redis.url));
    const service = startServiceProcess(main, ['--config', config]);
    try {
      await service.waitForLine('the start', (l) => l['msg'] === 'uploader started: taking upload jobs');
      await writeFile(config, `LogLevel = 'warn'\n${toml(redis.url, 'GiveUpAfter = 60\nConnectTimeout = 5\n')}`);
      service.signal('SIGHUP');
      const restart = await service.waitForLine('the restart-only keys', (l) => Array.isArray(l['keys']));
      // QueuePrefix is random per toml(): it changed too.
      assert.deepEqual(restart['keys'], ['QueuePrefix', '[uploader] ConnectTimeout', '[uploader] GiveUpAfter']);
      assert.ok(service.lines.some((l) => l['msg'] === 'SIGHUP: applied LogLevel = warn'));
      // At warn, the info line of a second reload is not written, the warning is.
      const seen = service.lines.length;
      service.signal('SIGHUP');
      await service.waitForLine('the second reload', (l) => Array.isArray(l['keys']), 10_000, seen);
      assert.equal(service.exitCode(), undefined, 'still running');
      assert.equal(await service.stop(), 0, service.output());
      assert.ok(!service.lines.slice(seen).some((l) => l['level'] === 30), 'no info line after LogLevel = warn');
    } finally {
      if (service.exitCode() === undefined) service.signal('SIGKILL');
    }
  });
});

function startUploader(configFile: string): { child: ChildProcess; exited: Promise<number | null>; output: () => string } {
  const child = spawn(process.execPath, [...nodeEntryArgs(main), '--config', configFile], {
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let output = '';
  child.stdout?.on('data', (chunk: Buffer) => (output += chunk.toString()));
  child.stderr?.on('data', (chunk: Buffer) => (output += chunk.toString()));
  const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
  return { child, exited, output: () => output };
}

describe('spark-uploader killed mid-job', () => {
  let h: Harness;
  let gnupgHome: string;
  const children: ChildProcess[] = [];

  before(async () => {
    [h, gnupgHome] = await Promise.all([startHarness(), makeSigningKey()]);
  });
  after(async () => {
    for (const child of children) if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
    await h.close();
    await rm(gnupgHome, { recursive: true, force: true });
  });

  it(
    'after a restart, does not count the file whose answer it never saw as uploaded, and completes once the operator removes it',
    { timeout: 120_000 },
    async () => {
      const job = await makeSignedJob(gnupgHome, h.config.workspacesDir, h.config.logsDir, { debSize: 4 * 1024 * 1024 });
      h.receiver.options.answerDelayMs = 1_500;
      const first = startUploader(h.configFile);
      children.push(first.child);
      await h.addUpload(job.manifest);
      const stored = async () => (await readdir(join(h.archiveDir, 'master')).catch(() => [])).filter((f) => !f.startsWith('.'));
      await waitFor('the uploader to store 3 files', async () => (await stored()).length >= 3, {
        timeoutMs: 60_000,
        intervalMs: 20,
        detail: () => first.output(),
      });
      // The third file is stored and its answer held back: the uploader dies not knowing it arrived.
      first.child.kill('SIGKILL');
      await first.exited;
      h.receiver.options.answerDelayMs = 0;
      assert.equal(await h.uploads.getJobState(stageJobId(job.manifest, 'upload')), 'active');

      const second = startUploader(h.configFile);
      children.push(second.child);
      // The restarted uploader cannot tell whether the archive got all of the third file: it does not count
      // the 403 as done, and says which file to remove where.
      const third = expectedOrder(job)[2] as string;
      await h.excerptMatching(
        job.uuid,
        new RegExp(`the archive holds a possibly partial ${third.replace(/[.+]/g, '\\$&')}: .* Remove incoming/master/`),
        60_000,
      );
      // The excerpt is queued during the try, just before the job moves to delayed until its next try.
      await waitFor(
        'the upload job delayed until its next try',
        async () => (await h.uploads.getJobState(stageJobId(job.manifest, 'upload'))) === 'delayed',
        {
          timeoutMs: 10_000,
          intervalMs: 20,
        },
      );
      await rm(join(h.archiveDir, 'master', third));
      assert.equal(await h.settled(job.uuid, 90_000), 'completed', second.output());

      for (const [name, data] of job.contents) {
        assert.deepEqual(await readFile(join(h.archiveDir, 'master', name)), data, `${name} differs`);
      }
      const created = h.receiver.requests.filter((r) => r.status === 201).map((r) => r.url.split('/').pop());
      assert.deepEqual(
        created,
        [...expectedOrder(job).slice(0, 3), ...expectedOrder(job).slice(2)],
        'each file created once, in order; the third again after its removal',
      );
      const refused = h.receiver.requests.filter((r) => r.status !== 201).map((r) => [r.url.split('/').pop(), r.status]);
      assert.ok(refused.length >= 2, 'a status excerpt goes out from the second try in a row that fails');
      assert.deepEqual(
        refused,
        refused.map(() => [third, 403]),
        'the restarted uploader re-sent only the file whose answer it never saw',
      );
      assert.match(second.output(), /upload try 2 failed: the archive holds a possibly partial/);
      assert.equal(((await h.reports.getJob(reportJobId(job.manifest, { kind: 'final' })))?.data as { kind: string }).kind, 'success');

      second.child.kill('SIGTERM');
      assert.equal(await second.exited, 0);
    },
  );
});
