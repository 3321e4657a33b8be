import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { existsSync } from 'node:fs';
import { mkdir, readdir, readFile, stat, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { pino } from 'pino';
import {
  jobLogFile,
  jobWorkspaceDir,
  MAX_LOG_EXCERPT_CHARS,
  reportJobId,
  reportPayloadSchema,
  signPayloadSchema,
  stageJobId,
  type BuilderControlMessage,
} from '@spark/protocol';
import { mountTinyDisk, STALLED_TOO_OFTEN, waitFor, within } from '@spark/testing';
import type { Builder } from '../src/builder.js';
import { FakeBuilderWorld } from './fake-builder-world.js';
import { startStallingServer } from './faults.js';
import { BUILD_WAIT, testConfig } from './fixtures.js';
import { openStandIn, R, type StandIn } from './stand-in-debspawn.js';

/*
 * The builder's limits, draining and bad jobs, on in-memory queues, heartbeats
 * and control channel (fake-builder-world.ts) with a stand-in debspawn
 * (stand-in-debspawn.ts) and real processes, files and downloads. What crosses
 * processes — `spark cancel` and `spark logs -f` through the CLI, a job lock
 * lost to a Redis pause — is in builder-redis.test.ts, on a real redis-server.
 */
describe('builder limits, cancellation, draining and bad jobs', { timeout: 600_000 }, () => {
  let standIn: StandIn;
  let root: string;
  const world = new FakeBuilderWorld();
  const { buildQueue, signQueue, reportQueue } = world;
  const builders: Builder[] = [];

  const startBuilder = async (id: string, builderToml: string, workspaceRoot = join(root, 'ws')) => {
    const config = testConfig({
      workspaceRoot,
      // Never dialled: the queues, heartbeats and control channel are the world's, in memory.
      redisUrl: 'redis://127.0.0.1:1',
      prefix: 'limits',
      builder: `Debspawn = "${standIn.debspawn}"\n${builderToml}`,
    });
    const builder = world.builder(config, pino({ level: 'silent' }), { id, killGraceMs: 500 });
    builders.push(builder);
    await builder.start();
    return { builder, config };
  };
  const closeBuilders = async () => {
    for (const builder of builders.splice(0)) await builder.close();
  };
  const addJob = async (uuid: string, suite: string, overrides: Record<string, unknown> = {}, round = R) => {
    const jobId = standIn.buildJobId(uuid, round);
    await buildQueue.add('build', standIn.buildJob(uuid, suite, overrides, round), { jobId });
    return jobId;
  };
  const finalReport = async (uuid: string) =>
    reportPayloadSchema.parse(
      (await within(`the final report of ${uuid}`, reportQueue.added(reportJobId({ uuid, round: R }, { kind: 'final' })), 30_000)).data,
    );
  const manifestOf = async (uuid: string) =>
    signPayloadSchema.parse((await within(`the sign job of ${uuid}`, signQueue.added(stageJobId({ uuid, round: R }, 'sign')), 30_000)).data)
      .manifest;
  const waitingReports = () => reportQueue.jobs().filter((job) => job.state === 'waiting');
  const logOf = (uuid: string) => standIn.logOf(uuid);
  const logShows = (uuid: string, pattern: RegExp) => standIn.logShows(uuid, pattern);
  const childrenAlive = () => standIn.childrenAlive();

  before(async () => {
    standIn = await openStandIn('limits');
    root = standIn.root;
  });

  after(async () => {
    for (const builder of builders) await builder.close();
    await standIn?.close();
  });

  it('rejects a job of an unknown kind and drops one whose uuid is a path', async () => {
    await startBuilder('limits-a', 'IdleOutputTimeout = 60');
    const unknown = randomUUID();
    await addJob(unknown, 'silent', { kind: 'firmware-build' });
    const report = await finalReport(unknown);
    assert.equal(report.kind, 'rejected');
    assert.match(report.kind === 'rejected' ? report.reason : '', /unknown job kind "firmware-build"/);

    const jobId = await addJob('../../etc', 'silent');
    const dropped = await within('the path-uuid job to complete', buildQueue.settled(jobId), BUILD_WAIT.timeoutMs);
    assert.equal(dropped.state, 'completed');
    const summary = dropped.returnvalue as { outcome: string; reason: string };
    assert.equal(summary.outcome, 'dropped');
    assert.match(summary.reason, /not a valid UUID/);
    assert.equal(reportQueue.job('../../etc.final'), undefined);
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
    const reports = waitingReports().map((job) => reportPayloadSchema.parse(job.data));
    const excerpts = reports.flatMap((report) => (report.uuid === uuid && report.kind === 'status' ? [report.logExcerpt] : []));
    assert.ok(excerpts.length > 0);
    for (const excerpt of excerpts) assert.ok(excerpt.length <= MAX_LOG_EXCERPT_CHARS + 256, `excerpt of ${excerpt.length} characters`);
    assert.ok(excerpts.some((excerpt) => /^\[… \d+ bytes of output left out; the full log is kept on the worker …\]\n/.test(excerpt)));
    assert.match(excerpts.join(''), /flood done/);
  });

  it('a newer round of a running job stops the earlier one, which reports nothing, and builds', async () => {
    const uuid = randomUUID();
    const next = String(Number(R) + 120_000);
    await addJob(uuid, 'chatty');
    await logShows(uuid, /still building/);
    await addJob(uuid, 'chatty', {}, next);
    const earlier = await within(
      'the earlier round to end',
      buildQueue.settled(stageJobId({ uuid, round: R }, 'build')),
      BUILD_WAIT.timeoutMs,
    );
    assert.equal(earlier.state, 'completed');
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
    const reports = waitingReports().map((job) => reportPayloadSchema.parse(job.data));
    assert.ok(
      !reports.some((report) => report.uuid === uuid && report.round === R && report.kind !== 'accepted' && report.kind !== 'status'),
    );
    assert.ok(!existsSync(join(root, 'ws', 'workspaces', `${uuid}.${R}`)), "the earlier round's workspace is removed");
    const stop: BuilderControlMessage = { action: 'cancel', uuid, reason: 'test over' };
    world.control.publish(JSON.stringify(stop));
    await within(
      'the next round to be rejected',
      reportQueue.added(reportJobId({ uuid, round: next }, { kind: 'final' })),
      BUILD_WAIT.timeoutMs,
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
    await waitFor('the heartbeat to count the running job', () => world.heartbeats.get('limits-b')?.busy === 1, BUILD_WAIT);
    await builder.close();
    builders.pop();
    const report = await finalReport(uuid);
    assert.equal(report.kind, 'rejected');
    assert.equal(report.kind === 'rejected' ? report.reason : '', 'the builder is shutting down');
    assert.equal(world.heartbeats.get('limits-b'), undefined, 'heartbeat removed');
    assert.deepEqual(await childrenAlive(), []);
  });

  it('rejects back and cleans up a job BullMQ failed because builders were killed while running it too often', async () => {
    const uuid = randomUUID();
    const leftover = join(root, 'ws', 'workspaces', `${uuid}.${R}`);
    await mkdir(leftover, { recursive: true });
    await writeFile(join(leftover, 'half-built.deb'), 'x');
    const jobId = await addJob(uuid, 'bookworm');
    // What BullMQ's stalled-job check does once a job stalled more than maxStalledCount times; no builder runs yet to take it.
    buildQueue.stalledTooOften(jobId);
    const { builder } = await startBuilder('limits-stalled', '');
    const report = await finalReport(uuid);
    assert.equal(report.kind, 'rejected');
    assert.match(
      report.kind === 'rejected' ? report.reason : '',
      /the builder could not finish the job: job stalled more than allowable limit/,
    );
    assert.equal(buildQueue.job(jobId)?.failedReason, STALLED_TOO_OFTEN);
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
    assert.equal(signQueue.job(stageJobId({ uuid, round: R }, 'sign')), undefined);
  });

  it('rejects back a job whose archive accepts the connection and then stalls, naming the URL and the time waited', async () => {
    const stalling = await startStallingServer();
    try {
      const silent = randomUUID();
      const midBody = randomUUID();
      await addJob(silent, 'bookworm', { data: standIn.dataWith(`${stalling.url}/silent/limited_1.0.dsc`) });
      await addJob(midBody, 'bookworm', { data: standIn.dataWith(`${stalling.url}/half/limited_1.0.dsc`) });
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
      assert.equal(signQueue.job(stageJobId({ uuid, round: R }, 'sign')), undefined);
      assert.deepEqual(await childrenAlive(), []);
      await closeBuilders();
    } finally {
      await unmount();
    }
  });
});
