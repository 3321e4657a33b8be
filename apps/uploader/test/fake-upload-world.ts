import { mkdir, mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { PassThrough } from 'node:stream';
import { reportJobId, type ArchiveTarget, type Manifest, type ReportPayload, type UploadOutcome } from '@spark/protocol';
import { createLogger, type Logger } from '@spark/service';
import { FakeQueue, startUploadReceiver, type UploadReceiver } from '@spark/testing';
import { uploadJob, type UploadJobDeps } from '../src/upload-job.js';
import { fakeUploaderReports, FakeUploadRecords } from './fake-upload-records.js';
import { handOutRecord } from './hand-out-record.js';

/** Most tries {@link FakeUploadWorld.upload} makes before it says the job never ends. */
const MAX_TRIES = 50;

/**
 * The uploader's job logic (`uploadJob`) on in-memory records and report
 * queue, against a real upload receiver and real files: no Redis. A job's
 * tries run one after the other, the clock set to each next try's time, as
 * the upload queue would run them once their delay passed.
 */
export interface FakeUploadWorld {
  root: string;
  workspacesDir: string;
  logsDir: string;
  receiver: UploadReceiver;
  archiveDir: string;
  records: FakeUploadRecords;
  /** The target of `master`, pointing at {@link receiver}. */
  target: ArchiveTarget;
  /** The uploader's report queue. */
  reports: FakeQueue;
  /** ms since the epoch, as the uploader reads it; the next try jumps it to that try's time. */
  clock: { time: number; now(): number };
  /** What the uploader logged (JSON lines). */
  logLines: string[];
  /** Records the hand-out of `manifest` and runs its tries until the job ends; returns how. */
  upload(manifest: Manifest): Promise<UploadOutcome>;
  /** The round's final report in the report queue, or undefined. */
  finalReport(round: Manifest): ReportPayload | undefined;
  close(): Promise<void>;
}

/** Starts a receiver at `/_upload` knowing `master`, the target of `master` pointing at it. */
export async function startFakeUploadWorld(options: { writeInPlace?: boolean } = {}): Promise<FakeUploadWorld> {
  const root = await mkdtemp(join(tmpdir(), 'spark-uploader-'));
  const archiveDir = join(root, 'archive');
  await mkdir(archiveDir);
  const receiver = await startUploadReceiver({
    dir: archiveDir,
    repos: ['master'],
    pathPrefix: '/_upload',
    writeInPlace: options.writeInPlace ?? false,
  });
  const records = new FakeUploadRecords();
  const target: ArchiveTarget = { upload_fqdn: `127.0.0.1:${receiver.port}/_upload`, upload_method: 'http' };
  records.targets = { master: target };
  const reports = new FakeQueue();
  const clock = {
    time: Date.UTC(2026, 10, 30, 12, 0, 0),
    now() {
      return this.time;
    },
  };
  const logLines: string[] = [];
  const sink = new PassThrough();
  sink.on('data', (chunk: Buffer) => logLines.push(...chunk.toString().split('\n').filter(Boolean)));
  const logger: Logger = createLogger('spark-uploader', sink);
  const workspacesDir = join(root, 'lkspark', 'workspaces');
  const deps: UploadJobDeps = {
    records,
    reports: fakeUploaderReports(reports),
    clock,
    workspacesDir,
    policy: { timeouts: { connectMs: 10_000, idleMs: 20_000 }, giveUpAfterMs: 6 * 3600_000, retryDelayMs: () => 20 },
  };
  return {
    root,
    workspacesDir,
    logsDir: join(root, 'lkspark', 'logs'),
    receiver,
    archiveDir,
    records,
    target,
    reports,
    clock,
    logLines,
    async upload(manifest) {
      // As the connector records each hand-out.
      records.write(handOutRecord(manifest));
      const log = logger.child({ jobId: manifest.uuid, round: manifest.round });
      for (let tries = 0; tries < MAX_TRIES; tries++) {
        const outcome = await uploadJob(manifest, deps, log);
        if ('ended' in outcome) return outcome.ended;
        clock.time = Math.max(clock.time, outcome.retryAt);
      }
      throw new Error(`upload of ${manifest.uuid} did not end within ${MAX_TRIES} tries:\n${logLines.slice(-5).join('\n')}`);
    },
    finalReport: (round) => reportsPayload(reports, reportJobId(round, { kind: 'final' })),
    async close() {
      await receiver.close();
      await rm(root, { recursive: true, force: true });
    },
  };
}

function reportsPayload(queue: FakeQueue, id: string): ReportPayload | undefined {
  return queue.job(id)?.data as ReportPayload | undefined;
}
