import assert from 'node:assert/strict';
import { createHash, randomUUID } from 'node:crypto';
import { existsSync } from 'node:fs';
import { chmod, mkdir, mkdtemp, readFile, readdir, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { Queue } from 'bullmq';
import { pino } from 'pino';
import {
  jobRecordKey,
  parseJobId,
  reportJobId,
  UUID,
  type NewJobRecord,
  builderControlChannel,
  builderHeartbeatsKey,
  jobLogFile,
  MAX_LOG_EXCERPT_CHARS,
  REPORT_QUEUES,
  reportPayloadSchema,
  signPayloadSchema,
  jobWorkspaceDir,
  stageJobId,
  type BuilderControlMessage,
} from '@spark/protocol';
import { connectRedis, type Redis } from '@spark/service';
import {
  makeSourcePackage,
  mountTinyDisk,
  randomQueuePrefix,
  runSparkCommand,
  startRedisServer,
  waitFor,
  type RedisServer,
} from '@spark/testing';
import { createBuilder, type Builder } from '../src/builder.js';
import { redisServerPid, startStallingServer } from './faults.js';
import { BUILD_WAIT, serveDirectory, testConfig, testConfigToml } from './fixtures.js';

/** The round of every job these tests hand the builder (as the connector would number it). */
const R = '1764405000000';
/**
 * How long a `spark` command may run before the test kills it: only a guard against one left running. Node with
 * tsx starting the CLI from source took more than the default 30 s at nice 19 behind two busy loops, and was killed.
 */
const SPARK_COMMAND_GUARD = { timeoutMs: 150_000 };

/*
 * Limits are about stopping a process tree, not about debspawn: a stand-in
 * `debspawn` (set through `[builder] Debspawn`) that stays silent or talks
 * forever, with a child process whose death proves the whole tree was stopped.
 */
const FAKE_DEBSPAWN = `#!/bin/sh
if [ "$1" = "--version" ]; then echo 0.0-test; exit 0; fi
echo "stand-in debspawn $*"
case "$*" in
  *flood*) head -c 30000000 /dev/zero | tr '\\0' x | fold -w 99; echo "flood done"; exit 1 ;;
  *handover*)
    for arg in "$@"; do case "$arg" in --results-dir=*) results=\${arg#--results-dir=} ;; esac; done
    ws=$(dirname "$(dirname "$results")"); mkdir -p "$ws/artifacts/$(basename "$ws" | cut -d. -f1).log"; echo "artifacts dir blocked"; exit 1 ;;
  *hungpipe*) sleep 600 & echo $! > "$SPARK_TEST_PIDS/$$.child"; echo "leader exits; its child keeps the pipe"; exit 1 ;;
  *endless*) sleep 600 & echo $! > "$SPARK_TEST_PIDS/$$.child"; yes "an endless build log line" ;;
  *lockloss*)
    if [ -e "$SPARK_TEST_PIDS/../lockloss-ran" ]; then echo "second run in $PWD"; exit 1; fi
    touch "$SPARK_TEST_PIDS/../lockloss-ran"; echo "first run in $PWD" ;;
esac
sleep 300 &
echo $! > "$SPARK_TEST_PIDS/$$.child"
case "$*" in
  *silent*) wait ;;
  *) while true; do echo "still building"; sleep 0.1; done ;;
esac
`;

describe('builder limits, cancellation, draining and bad jobs', { timeout: 600_000 }, () => {
  let redis: RedisServer;
  let connection: Redis;
  let root: string;
  let pids: string;
  let http: Awaited<ReturnType<typeof serveDirectory>>;
  let buildQueue: Queue;
  let signQueue: Queue;
  let reportQueue: Queue;
  let dscUrl: string;
  let dscSha256: string;
  const builders: Builder[] = [];
  const prefix = randomQueuePrefix();

  const startBuilder = async (id: string, builderToml: string, workspaceRoot = join(root, 'ws')) => {
    const config = testConfig({
      workspaceRoot,
      redisUrl: redis.url,
      prefix,
      builder: `Debspawn = "${join(root, 'debspawn')}"\n${builderToml}`,
    });
    const builder = createBuilder({ config, logger: pino({ level: 'silent' }), id, killGraceMs: 500 });
    builders.push(builder);
    await builder.start();
    return { builder, config };
  };
  const closeBuilders = async () => {
    for (const builder of builders.splice(0)) await builder.close();
  };
  const dataWith = (url: string) => ({
    package_name: 'limited',
    package_version: '1.0',
    suite: 'bookworm',
    dsc_url: url,
    sha256sum: dscSha256,
    do_indep: false,
  });
  const addJob = async (uuid: string, suite: string, overrides: Record<string, unknown> = {}, round = R) => {
    const jobId = UUID.test(uuid) ? stageJobId({ uuid, round }, 'build') : uuid.replace(/[^0-9a-z-]/g, 'x');
    if (UUID.test(uuid)) {
      // As the connector records each hand-out: `spark cancel <uuid>` finds the round through it.
      const record: NewJobRecord = {
        uuid,
        round,
        kind: 'package-build',
        architecture: 'amd64',
        repo: 'master',
        package: 'limited',
        version: '1.0',
        suite,
        receivedAt: 0,
      };
      await connection.set(jobRecordKey(prefix, uuid), JSON.stringify(record));
    }
    await buildQueue.add(
      'build',
      {
        job: {
          uuid,
          module: 'default',
          kind: 'package-build',
          architecture: 'amd64',
          repo: 'master',
          data: { package_name: 'limited', package_version: '1.0', suite, dsc_url: dscUrl, sha256sum: dscSha256, do_indep: false },
          ...overrides,
        },
        round,
        receivedAt: Date.now(),
      },
      { jobId },
    );
    return jobId;
  };
  const finalReport = (uuid: string) =>
    waitFor(
      `the final report of ${uuid}`,
      async () => {
        const job = await reportQueue.getJob(reportJobId({ uuid, round: R }, { kind: 'final' }));
        return job ? reportPayloadSchema.parse(job.data) : null;
      },
      { timeoutMs: 30_000, intervalMs: 200 },
    );
  const manifestOf = (uuid: string) =>
    waitFor(
      `the sign job of ${uuid}`,
      async () => {
        const job = await signQueue.getJob(stageJobId({ uuid, round: R }, 'sign'));
        return job ? signPayloadSchema.parse(job.data).manifest : null;
      },
      { timeoutMs: 30_000, intervalMs: 200 },
    );
  const logOf = (uuid: string) => readFile(jobLogFile(join(root, 'ws', 'logs'), { uuid, round: R }), 'utf8');
  const logShows = (uuid: string, pattern: RegExp) =>
    waitFor(`${String(pattern)} in the log of ${uuid}`, async () => pattern.test(await logOf(uuid).catch(() => '')), {
      timeoutMs: 30_000,
      intervalMs: 200,
    });
  const childrenAlive = async () => {
    const alive: number[] = [];
    for (const file of await readdir(pids)) {
      const pid = Number(await readFile(join(pids, file), 'utf8'));
      const state = await readFile(`/proc/${pid}/stat`, 'utf8').catch(() => null);
      if (state !== null && !/^\d+ \(.*\) Z/.test(state)) alive.push(pid);
    }
    return alive;
  };

  before(async () => {
    redis = await startRedisServer();
    connection = connectRedis(redis.url, 'worker');
    root = await mkdtemp(join(tmpdir(), 'spark-builder-limits-'));
    pids = join(root, 'pids');
    await mkdir(pids);
    process.env['SPARK_TEST_PIDS'] = pids;
    await writeFile(join(root, 'debspawn'), FAKE_DEBSPAWN);
    await chmod(join(root, 'debspawn'), 0o755);
    await mkdir(join(root, 'archive'));
    const pkg = await makeSourcePackage(join(root, 'archive'), { name: 'limited', version: '1.0' });
    http = await serveDirectory(join(root, 'archive'));
    dscUrl = `${http.url}/limited_1.0.dsc`;
    dscSha256 = createHash('sha256')
      .update(await readFile(pkg.dsc))
      .digest('hex');
    buildQueue = new Queue('build', { connection, prefix });
    signQueue = new Queue('sign', { connection, prefix });
    reportQueue = new Queue(REPORT_QUEUES.builder, { connection, prefix });
  });

  after(async () => {
    for (const builder of builders) await builder.close();
    await buildQueue?.close();
    await signQueue?.close();
    await reportQueue?.close();
    await connection?.quit();
    await http?.close();
    await redis?.stop();
    delete process.env['SPARK_TEST_PIDS'];
    if (root) await rm(root, { recursive: true, force: true });
  });

  it('rejects a job of an unknown kind and drops one whose uuid is a path', async () => {
    await startBuilder('limits-a', 'IdleOutputTimeout = 60');
    const unknown = randomUUID();
    await addJob(unknown, 'silent', { kind: 'firmware-build' });
    const report = await finalReport(unknown);
    assert.equal(report.kind, 'rejected');
    assert.match(report.kind === 'rejected' ? report.reason : '', /unknown job kind "firmware-build"/);

    const jobId = await addJob('../../etc', 'silent');
    const dropped = await waitFor(
      'the path-uuid job to complete',
      async () => {
        const job = await buildQueue.getJob(jobId);
        // Read it again once completed: the first read may predate its return value.
        return (await job?.isCompleted()) ? ((await buildQueue.getJob(jobId)) ?? null) : null;
      },
      BUILD_WAIT,
    );
    const summary = dropped.returnvalue as { outcome: string; reason: string };
    assert.equal(summary.outcome, 'dropped');
    assert.match(summary.reason, /not a valid UUID/);
    assert.equal(await reportQueue.getJob('../../etc.final'), undefined);
    assert.ok(!existsSync(join(root, 'etc')));
  });

  it('stops a build that prints nothing for IdleOutputTimeout, whole process tree, and fails it with the reason', async () => {
    // A 1 s limit on a builder of its own. The next tests' builds print every 0.1 s, but a builder held up for a
    // second (this process waiting for a CPU on a loaded machine) would find them silent and stop them as well.
    await closeBuilders();
    await startBuilder('limits-idle', 'IdleOutputTimeout = 1');
    const uuid = randomUUID();
    await addJob(uuid, 'silent');
    const manifest = await manifestOf(uuid);
    assert.equal(manifest.result, 'failure');
    const log = await logOf(uuid);
    assert.match(log, /stopping the command: no output for 1 s/);
    assert.match(log, /job finished: failure \(build stopped: no output for 1 s\)/);
    await waitFor('the stand-in build tree to be gone', async () => (await childrenAlive()).length === 0, {
      timeoutMs: 10_000,
      intervalMs: 200,
    });
    await closeBuilders();
    await startBuilder('limits-a', 'IdleOutputTimeout = 60');
  });

  it('keeps all of a 30 MB build output in the log file but sends only bounded excerpts', async () => {
    const uuid = randomUUID();
    await addJob(uuid, 'flood');
    const manifest = await manifestOf(uuid);
    assert.equal(manifest.result, 'failure');
    const log = await logOf(uuid);
    assert.ok(log.length > 30_000_000, `log holds ${log.length} characters`);
    assert.match(log, /flood done/);
    const reports = (await reportQueue.getJobs(['waiting'])).map((job) => reportPayloadSchema.parse(job.data));
    const excerpts = reports.flatMap((report) => (report.uuid === uuid && report.kind === 'status' ? [report.logExcerpt] : []));
    assert.ok(excerpts.length > 0);
    for (const excerpt of excerpts) assert.ok(excerpt.length <= MAX_LOG_EXCERPT_CHARS + 256, `excerpt of ${excerpt.length} characters`);
    assert.ok(excerpts.some((excerpt) => /^\[… \d+ bytes of output left out; the full log is kept on the worker …\]\n/.test(excerpt)));
    assert.match(excerpts.join(''), /flood done/);
  });

  it('spark cancel stops a running job and rejects it back; spark logs -f follows it to the end', async () => {
    const uuid = randomUUID();
    await addJob(uuid, 'chatty');
    await logShows(uuid, /still building/);
    const configFile = join(root, 'spark.toml');
    await writeFile(configFile, testConfigToml({ workspaceRoot: join(root, 'ws'), redisUrl: redis.url, prefix }));
    const following = runSparkCommand(['logs', '-f', uuid, '--config', configFile], SPARK_COMMAND_GUARD);
    const cancel = await runSparkCommand(['cancel', uuid, '--reason', 'requested by test', '--config', configFile], SPARK_COMMAND_GUARD);
    assert.equal(cancel.code, 0, cancel.stderr);
    assert.equal(cancel.stdout, `job ${uuid} rejected back to Lighthouse: cancelled by operator: requested by test\n`);
    const followed = await following;
    assert.equal(followed.code, 0, followed.stderr);
    assert.match(followed.stdout, /still building/);
    assert.match(followed.stdout, /job rejected back to Lighthouse: cancelled by operator: requested by test\n$/);
    const again = await runSparkCommand(['cancel', uuid, '--config', configFile], SPARK_COMMAND_GUARD);
    assert.equal(again.code, 1);
    assert.match(again.stderr, new RegExp(`job ${uuid} is not running on a builder`));
    await connection.publish(builderControlChannel(prefix), '{"action":"cancel","uuid":"not-a-uuid"}');
    const report = await finalReport(uuid);
    assert.equal(report.kind, 'rejected');
    assert.equal(report.kind === 'rejected' ? report.reason : '', 'cancelled by operator: requested by test');
    assert.match(await logOf(uuid), /job rejected back to Lighthouse: cancelled by operator/);
    assert.equal(await signQueue.getJob(stageJobId({ uuid, round: R }, 'sign')), undefined);
    await waitFor('the stand-in build tree to be gone', async () => (await childrenAlive()).length === 0, {
      timeoutMs: 10_000,
      intervalMs: 200,
    });
  });

  it('spark logs -f goes on with the next round when the job is handed out to this worker again', async () => {
    const uuid = randomUUID();
    const next = String(Number(R) + 60_000);
    const configFile = join(root, 'spark.toml');
    await writeFile(configFile, testConfigToml({ workspaceRoot: join(root, 'ws'), redisUrl: redis.url, prefix }));
    await addJob(uuid, 'chatty');
    await logShows(uuid, /still building/);
    let followerStarted: (started: true) => void = () => undefined;
    const started = new Promise<true>((resolve) => (followerStarted = resolve));
    const following = runSparkCommand(['logs', '-f', uuid, '--config', configFile], {
      ...SPARK_COMMAND_GUARD,
      onStdout: (stdout) => stdout.includes('still building') && followerStarted(true),
    });
    await started;
    // Lighthouse hands the job out again while its first round still builds: the new round waits in the queue.
    await buildQueue.pause();
    await addJob(uuid, 'chatty', {}, next);
    const stop: BuilderControlMessage = { action: 'cancel', uuid, reason: 'first round' };
    await connection.publish(builderControlChannel(prefix), JSON.stringify(stop));
    await finalReport(uuid);
    await buildQueue.resume();
    const nextLog = jobLogFile(join(root, 'ws', 'logs'), { uuid, round: next });
    await waitFor(
      'the next round to build',
      async () => /still building/.test(await readFile(nextLog, 'utf8').catch(() => '')),
      BUILD_WAIT,
    );
    const cancel = await runSparkCommand(['cancel', uuid, '--reason', 'second round', '--config', configFile], SPARK_COMMAND_GUARD);
    assert.equal(cancel.code, 0, cancel.stderr);
    const followed = await following;
    assert.equal(followed.code, 0, followed.stderr);
    assert.equal(followed.stderr, `spark logs: job ${uuid} was handed out to this worker again; following round ${next}\n`);
    assert.match(followed.stdout, /cancelled by operator: first round\n[^]*still building[^]*cancelled by operator: second round\n$/);
    await waitFor('the stand-in build tree to be gone', async () => (await childrenAlive()).length === 0, {
      timeoutMs: 10_000,
      intervalMs: 200,
    });
  });

  it('a newer round of a running job stops the earlier one, which reports nothing, and builds', async () => {
    const uuid = randomUUID();
    const next = String(Number(R) + 120_000);
    await addJob(uuid, 'chatty');
    await logShows(uuid, /still building/);
    await addJob(uuid, 'chatty', {}, next);
    const earlier = await waitFor(
      'the earlier round to end',
      async () => {
        const job = await buildQueue.getJob(stageJobId({ uuid, round: R }, 'build'));
        return (await job?.isCompleted()) ? ((await buildQueue.getJob(stageJobId({ uuid, round: R }, 'build'))) ?? null) : null;
      },
      BUILD_WAIT,
    );
    assert.deepEqual(earlier.returnvalue, { outcome: 'dropped', reason: `Lighthouse handed the job out again (round ${next})` });
    assert.match(
      await logOf(uuid),
      /this round is over: Lighthouse handed the job out again \(round \d+\); nothing is reported from here\n$/,
    );
    const nextLog = jobLogFile(join(root, 'ws', 'logs'), { uuid, round: next });
    await waitFor(
      'the next round to build',
      async () => /still building/.test(await readFile(nextLog, 'utf8').catch(() => '')),
      BUILD_WAIT,
    );
    const reports = (await reportQueue.getJobs(['waiting'])).map((job) => reportPayloadSchema.parse(job.data));
    assert.ok(
      !reports.some((report) => report.uuid === uuid && report.round === R && report.kind !== 'accepted' && report.kind !== 'status'),
    );
    assert.ok(!existsSync(join(root, 'ws', 'workspaces', `${uuid}.${R}`)), "the earlier round's workspace is removed");
    const stop: BuilderControlMessage = { action: 'cancel', uuid, reason: 'test over' };
    await connection.publish(builderControlChannel(prefix), JSON.stringify(stop));
    await waitFor(
      'the next round to be rejected',
      () => reportQueue.getJob(reportJobId({ uuid, round: next }, { kind: 'final' })),
      BUILD_WAIT,
    );
    await waitFor('the stand-in build tree to be gone', async () => (await childrenAlive()).length === 0, {
      timeoutMs: 10_000,
      intervalMs: 200,
    });
  });

  it('drains on close: stops taking jobs, then stops and rejects what still runs after DrainTimeout', async () => {
    const first = builders.pop() as Builder;
    await first.close();
    const { builder } = await startBuilder('limits-b', 'DrainTimeout = 0.5\nIdleOutputTimeout = 60');
    const uuid = randomUUID();
    await addJob(uuid, 'chatty');
    await logShows(uuid, /still building/);
    await waitFor(
      'the heartbeat to count the running job',
      async () => {
        const heartbeat = JSON.parse((await connection.hget(builderHeartbeatsKey(prefix), 'limits-b')) ?? '{}') as { busy?: number };
        return heartbeat.busy === 1;
      },
      BUILD_WAIT,
    );
    await builder.close();
    builders.pop();
    const report = await finalReport(uuid);
    assert.equal(report.kind, 'rejected');
    assert.equal(report.kind === 'rejected' ? report.reason : '', 'the builder is shutting down');
    assert.equal(await connection.hget(builderHeartbeatsKey(prefix), 'limits-b'), null, 'heartbeat removed');
    assert.deepEqual(await childrenAlive(), []);
  });

  it('rejects back and cleans up a job BullMQ failed because builders were killed while running it too often', async () => {
    const { builder } = await startBuilder('limits-stalled', '');
    const uuid = randomUUID();
    const leftover = join(root, 'ws', 'workspaces', `${uuid}.${R}`);
    await mkdir(leftover, { recursive: true });
    await writeFile(join(leftover, 'half-built.deb'), 'x');
    await buildQueue.pause();
    const jobId = await addJob(uuid, 'bookworm');
    // What BullMQ's stalled-job check writes once a job stalled more than maxStalledCount times.
    await connection.hset(buildQueue.toKey(jobId), 'defa', 'job stalled more than allowable limit');
    await buildQueue.resume();
    const report = await finalReport(uuid);
    assert.equal(report.kind, 'rejected');
    assert.match(
      report.kind === 'rejected' ? report.reason : '',
      /the builder could not finish the job: job stalled more than allowable limit/,
    );
    await waitFor('the leftover workspace to be removed', () => !existsSync(leftover), {
      timeoutMs: 10_000,
      intervalMs: 200,
    });
    // The next test's job must go to its own builder.
    builders.splice(builders.indexOf(builder), 1);
    await builder.close();
  });

  it('fails a job that exceeds MaxBuildTime', async () => {
    await startBuilder('limits-c', 'MaxBuildTime = 1.5\nIdleOutputTimeout = 60');
    const uuid = randomUUID();
    await addJob(uuid, 'chatty');
    const manifest = await manifestOf(uuid);
    assert.equal(manifest.result, 'failure');
    assert.match(await logOf(uuid), /job finished: failure \(build stopped: job exceeded its time limit of 2 s\)/);
  });

  const statusReportsOf = async (uuid: string) =>
    (await reportQueue.getJobs(['waiting']))
      .map((job) => ({ id: parseJobId(job.id), excerpt: (job.data as { logExcerpt: string }).logExcerpt }))
      .flatMap(({ id, excerpt }) =>
        id?.uuid === uuid && id.type === 'report' && id.slot.kind === 'status' ? [{ seq: id.slot.seq, excerpt }] : [],
      )
      .sort((a, b) => a.seq - b.seq);
  const runDirsOf = async (uuid: string, workspaceRoot = join(root, 'ws')) =>
    (await readdir(jobWorkspaceDir(join(workspaceRoot, 'workspaces'), { uuid, round: R })).catch(() => [] as string[])).filter((name) =>
      name.startsWith('run-'),
    );

  it('stops a build that floods its log past MaxLogSize, whole tree, and fails it; the log keeps MaxLogSize bytes of output', async () => {
    await closeBuilders();
    await startBuilder('limits-d', 'MaxLogSize = 1000000\nIdleOutputTimeout = 60\nDownloadIdleTimeout = 1\nDownloadConnectTimeout = 1');
    const uuid = randomUUID();
    await addJob(uuid, 'endless');
    const manifest = await manifestOf(uuid);
    assert.equal(manifest.result, 'failure');
    const log = await logOf(uuid);
    assert.match(log, /job finished: failure \(build stopped: the build log reached MaxLogSize \(1000000 bytes of output\)\)/);
    const size = (await stat(jobLogFile(join(root, 'ws', 'logs'), { uuid, round: R }))).size;
    assert.ok(size > 1_000_000 && size < 1_010_000, `log of ${size} bytes`);
    // The run removes its directory just after the hand-over the manifest was read from.
    await waitFor(
      'the run directory removed once the artifacts are handed over',
      async () => (await runDirsOf(uuid)).length === 0,
      BUILD_WAIT,
    );
    await waitFor('the stand-in build tree to be gone', async () => (await childrenAlive()).length === 0, {
      timeoutMs: 10_000,
      intervalMs: 200,
    });
  });

  it('ends a build whose leader exits while a background process still holds its output: at once, no process left', async () => {
    const uuid = randomUUID();
    await addJob(uuid, 'hungpipe');
    const manifest = await manifestOf(uuid);
    assert.equal(manifest.result, 'failure');
    const log = await logOf(uuid);
    assert.match(log, /leader exits; its child keeps the pipe/);
    // Ended by the leader's exit: a build left waiting on the pipe would have been stopped by IdleOutputTimeout instead.
    assert.match(log, /job finished: failure \(debspawn exited with code 1\)/);
    assert.deepEqual(await childrenAlive(), []);
  });

  it('removes the workspace of a job whose artifacts cannot be handed over, and rejects it back', async () => {
    const uuid = randomUUID();
    await addJob(uuid, 'handover');
    const report = await finalReport(uuid);
    assert.equal(report.kind, 'rejected');
    assert.match(report.kind === 'rejected' ? report.reason : '', /^cannot hand over the job's artifacts: EISDIR/);
    assert.equal(existsSync(jobWorkspaceDir(join(root, 'ws', 'workspaces'), { uuid, round: R })), false, 'workspace removed');
    assert.equal(await signQueue.getJob(stageJobId({ uuid, round: R }, 'sign')), undefined);
  });

  it('rejects back a job whose archive accepts the connection and then stalls, naming the URL and the time waited', async () => {
    const stalling = await startStallingServer();
    try {
      const silent = randomUUID();
      const midBody = randomUUID();
      await addJob(silent, 'bookworm', { data: dataWith(`${stalling.url}/silent/limited_1.0.dsc`) });
      await addJob(midBody, 'bookworm', { data: dataWith(`${stalling.url}/half/limited_1.0.dsc`) });
      for (const [uuid, path] of [
        [silent, 'silent'],
        [midBody, 'half'],
      ] as const) {
        const report = await finalReport(uuid);
        assert.equal(report.kind, 'rejected');
        assert.equal(
          report.kind === 'rejected' ? report.reason : '',
          `source refused: cannot download ${stalling.url}/${path}/limited_1.0.dsc: no data received for 1 s (DownloadIdleTimeout)`,
        );
        assert.equal(existsSync(jobWorkspaceDir(join(root, 'ws', 'workspaces'), { uuid, round: R })), false, 'workspace removed');
      }
      assert.ok(stalling.connections() >= 2);
    } finally {
      await stalling.close();
    }
  });

  it('rejects back a job whose log cannot be written (a full disk), with no process left and the workspace removed', async () => {
    await closeBuilders();
    const tinyRoot = join(root, 'tiny');
    await mkdir(join(tinyRoot, 'logs'), { recursive: true });
    const unmount = await mountTinyDisk(join(tinyRoot, 'logs'), 256 * 1024);
    try {
      await startBuilder('limits-e', 'IdleOutputTimeout = 60', tinyRoot);
      const uuid = randomUUID();
      await addJob(uuid, 'endless');
      const report = await finalReport(uuid);
      assert.equal(report.kind, 'rejected');
      assert.match(report.kind === 'rejected' ? report.reason : '', /^cannot write the job log \/.*\.log: ENOSPC: no space left on device/);
      assert.equal(existsSync(jobWorkspaceDir(join(tinyRoot, 'workspaces'), { uuid, round: R })), false, 'workspace removed');
      assert.equal(await signQueue.getJob(stageJobId({ uuid, round: R }, 'sign')), undefined);
      assert.deepEqual(await childrenAlive(), []);
      await closeBuilders();
    } finally {
      await unmount();
    }
  });

  it('a builder that loses its job lock to a Redis pause stops the build and reports nothing; the next run starts clean and goes on numbering', async () => {
    await closeBuilders();
    await startBuilder('limits-f', 'IdleOutputTimeout = 60');
    await startBuilder('limits-g', 'IdleOutputTimeout = 60');
    const uuid = randomUUID();
    await addJob(uuid, 'lockloss');
    await logShows(uuid, /still building/);
    await waitFor('a status excerpt of the first run', async () => (await statusReportsOf(uuid)).length > 0, {
      timeoutMs: 10_000,
      intervalMs: 200,
    });
    const [firstRunDir] = await runDirsOf(uuid);
    assert.ok(firstRunDir);
    // Longer than the 10 s lock: once Redis runs again the lock has expired and the job is handed out anew.
    const redisPid = await redisServerPid(redis.port);
    process.kill(redisPid, 'SIGSTOP');
    await new Promise((resolve) => setTimeout(resolve, 13_000));
    process.kill(redisPid, 'SIGCONT');

    const manifest = await manifestOf(uuid);
    assert.equal(manifest.result, 'failure');
    const log = await logOf(uuid);
    assert.match(log, /second run in \/.*\/run-[0-9a-f-]+/);
    assert.doesNotMatch(log, /still building|first run/, 'the log is the second run only');
    assert.ok(!log.includes(firstRunDir), 'the second run builds in a directory of its own');
    // The run removes its directory just after the hand-over the manifest was read from.
    await waitFor('the run directories removed', async () => (await runDirsOf(uuid)).length === 0, BUILD_WAIT);
    assert.equal(
      await reportQueue.getJob(reportJobId({ uuid, round: R }, { kind: 'final' })),
      undefined,
      'the first run reported nothing final (the job goes on to the signer)',
    );
    const statuses = await statusReportsOf(uuid);
    const seqs = statuses.map((status) => status.seq);
    const second = statuses.filter((status) => /second run/.test(status.excerpt));
    assert.equal(second.length, 1, `statuses: ${JSON.stringify(seqs)}`);
    const firstRunSeqs = statuses.filter((status) => /still building/.test(status.excerpt)).map((status) => status.seq);
    assert.ok(firstRunSeqs.length > 0);
    assert.ok(
      (second[0]?.seq ?? 0) > Math.max(...firstRunSeqs),
      `second run's excerpt is #${second[0]?.seq}, after ${firstRunSeqs.join(',')}`,
    );
    await waitFor("the first run's tree to be gone", async () => (await childrenAlive()).length === 0, {
      timeoutMs: 10_000,
      intervalMs: 200,
    });
  });
});
