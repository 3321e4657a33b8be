import { mkdir, mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { PassThrough } from 'node:stream';
import type { UploaderSettings } from '@spark/config';
import {
  parseJobId,
  QueueName,
  reportJobId,
  stageJobId,
  type ArchiveTarget,
  type Manifest,
  type ReportPayload,
  type UploadOutcome,
} from '@spark/protocol';
import { createLogger, type Logger } from '@spark/service';
import { FakeQueue, startUploadReceiver, type FakeJob, type UploadReceiver } from '@spark/testing';
import { uploadJob, type UploadJobDeps, type UploadPolicy } from '../src/upload-job.js';
import { createUploader, type Uploader } from '../src/uploader.js';
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
  /** The `upload` queue, which {@link startUploader}'s uploaders take their jobs from. */
  uploads: FakeQueue;
  /**
   * Starts the uploader service as main.ts puts it together (`createUploader`),
   * on {@link uploads}, {@link reports}, {@link records} and {@link clock};
   * {@link close} stops it. `[uploader]` settings default to `IdleTimeout = 20`
   * and the defaults otherwise; the pause between tries defaults to 20 ms.
   */
  startUploader(options?: {
    settings?: Partial<Pick<UploaderSettings, 'connectTimeoutMs' | 'idleTimeoutMs' | 'giveUpAfterMs'>>;
    retryDelayMs?: UploadPolicy['retryDelayMs'];
  }): Promise<Uploader>;
  /** Records the hand-out of `manifest`, as the connector does, and adds its `upload` job, as the signer does. */
  addUpload(manifest: Manifest): Promise<void>;
  /**
   * Lets the tries of job `uuid` run, one after the other, the clock moved to
   * each next try's time (as BullMQ promotes a delayed job once its time has
   * come), until `enough` holds after a try or the job is done with; returns
   * the job. Throws when neither happens within a bound number of tries.
   */
  runTries(uuid: string, enough?: () => boolean): Promise<FakeJob>;
  /** Runs the job's tries until it is done with; returns whether it completed or failed. */
  settled(uuid: string): Promise<'completed' | 'failed'>;
  /** The job's status excerpts in the report queue, by sequence number. */
  statusExcerpts(uuid: string): { seq: number; text: string }[];
  /** Runs the job's tries until it has a status excerpt matching `pattern`; returns it. */
  excerptMatching(uuid: string, pattern: RegExp): Promise<string>;
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
  const uploads = new FakeQueue();
  const running: Uploader[] = [];
  const uploadId = (uuid: string) => {
    const job = uploads.jobs().find((kept) => parseJobId(kept.id)?.uuid === uuid);
    if (!job) throw new Error(`no upload job of ${uuid}`);
    return job.id;
  };
  const statusExcerpts = (uuid: string) => {
    const excerpts: { seq: number; text: string }[] = [];
    for (const job of reports.jobs()) {
      const id = parseJobId(job.id);
      if (id?.type === 'report' && id.slot.kind === 'status' && id.uuid === uuid) {
        excerpts.push({ seq: id.slot.seq, text: String((job.data as { logExcerpt?: unknown }).logExcerpt) });
      }
    }
    return excerpts.sort((a, b) => a.seq - b.seq);
  };
  const runTries = async (uuid: string, enough: () => boolean = () => false): Promise<FakeJob> => {
    const id = uploadId(uuid);
    for (let tries = 0; tries < MAX_TRIES; tries++) {
      const job = await uploads.reached(id, ['delayed', 'completed', 'failed']);
      if (enough() || job.state !== 'delayed') return job;
      clock.time = Math.max(clock.time, job.retryAt ?? clock.time);
      uploads.promoteDue(clock);
    }
    throw new Error(`upload of ${uuid}: not done within ${MAX_TRIES} tries:\n${logLines.slice(-5).join('\n')}`);
  };
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
    uploads,
    async startUploader(options = {}) {
      const uploader = createUploader({
        config: {
          workspacesDir,
          uploader: {
            connectTimeoutMs: 30_000,
            idleTimeoutMs: 20_000,
            giveUpAfterMs: 6 * 3600_000,
            metricsPort: 0,
            metricsListen: '127.0.0.1',
            ...options.settings,
          },
        },
        logger,
        uploadJobs: uploads.retryingInbox(),
        reports: fakeUploaderReports(reports),
        records,
        clock,
        ready: () => Promise.resolve(),
        retryDelayMs: options.retryDelayMs ?? (() => 20),
      });
      running.push(uploader);
      await uploader.start();
      return uploader;
    },
    async addUpload(manifest) {
      records.write(handOutRecord(manifest));
      await uploads.add(QueueName.upload, { manifest }, { jobId: stageJobId(manifest, 'upload') });
    },
    runTries,
    async settled(uuid) {
      const job = await runTries(uuid);
      if (job.state === 'delayed') throw new Error(`upload of ${uuid} is still delayed`);
      return job.state as 'completed' | 'failed';
    },
    statusExcerpts,
    async excerptMatching(uuid, pattern) {
      const matching = () => statusExcerpts(uuid).find((excerpt) => pattern.test(excerpt.text))?.text;
      await runTries(uuid, () => matching() !== undefined);
      const found = matching();
      if (found === undefined) {
        const seen = statusExcerpts(uuid).map((excerpt) => excerpt.text);
        throw new Error(`no status excerpt of ${uuid} matches ${String(pattern)}:\n${seen.join('\n')}`);
      }
      return found;
    },
    async close() {
      for (const uploader of running) await uploader.close();
      await receiver.close();
      await rm(root, { recursive: true, force: true });
    },
  };
}

function reportsPayload(queue: FakeQueue, id: string): ReportPayload | undefined {
  return queue.job(id)?.data as ReportPayload | undefined;
}
