import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { PassThrough } from 'node:stream';
import { Queue } from 'bullmq';
import { loadConfig, type SparkConfig } from '@spark/config';
import {
  archiveTargetsKey,
  jobRecordKey,
  parseJobId,
  QueueName,
  REPORT_QUEUES,
  stageJobId,
  type ArchiveTarget,
  type Manifest,
} from '@spark/protocol';
import { connectRedis, createLogger, redisReady, type Logger, type Redis } from '@spark/service';
import { randomQueuePrefix, startRedisServer, waitFor, type RedisServer } from '@spark/testing';
import { startUploadReceiver, type UploadReceiver } from '@spark/testing';
import type { UploadPolicy } from '../src/upload-job.js';
import type { Uploader } from '../src/uploader.js';
import { createUploaderOnRedis } from '../src/uploader-redis.js';
import { handOutRecord } from './hand-out-record.js';

/** An uploader put together as main.ts does; `close` stops it and closes its connections. */
export function startUploaderOnRedis(config: SparkConfig, logger: Logger, retryDelayMs?: UploadPolicy['retryDelayMs']): Uploader {
  return createUploaderOnRedis(config, logger, retryDelayMs ? { retryDelayMs } : {});
}

/** Everything an uploader test runs against: Redis, a receiver, a spark.toml, the queues. */
/** The round of every job these tests hand the uploader. */
export const TEST_ROUND = '1764405000000';

export interface Harness {
  redisServer: RedisServer;
  redis: Redis;
  prefix: string;
  root: string;
  configFile: string;
  config: SparkConfig;
  receiver: UploadReceiver;
  archiveDir: string;
  uploads: Queue;
  reports: Queue;
  /** What the services under test logged (JSON lines). */
  logLines: string[];
  logger: Logger;
  setTargets(repos: Record<string, ArchiveTarget>): Promise<void>;
  /** The target pointing at this harness's receiver. */
  target: ArchiveTarget;
  addUpload(manifest: Manifest): Promise<void>;
  /** Waits until the job's upload is completed or failed; returns the state. */
  settled(uuid: string, timeoutMs?: number): Promise<'completed' | 'failed'>;
  /** The job's status excerpts in the uploader's report queue, by sequence number. */
  statusExcerpts(uuid: string): Promise<{ seq: number; text: string }[]>;
  /** Waits until the job has a status excerpt matching `pattern`; returns it. */
  excerptMatching(uuid: string, pattern: RegExp, timeoutMs?: number): Promise<string>;
  close(): Promise<void>;
}

/** Options of {@link startHarness}. */
export interface HarnessOptions {
  /** Lines of the spark.toml's `[uploader]` table (default: `IdleTimeout = 20`). */
  uploaderKeys?: string[];
  /** The receiver stores as lkwebupload does (partial files stay). */
  writeInPlace?: boolean;
}

/** Starts a private Redis, a receiver at `/_upload` knowing `master`, and writes a spark.toml using both. */
export async function startHarness(options: HarnessOptions = {}): Promise<Harness> {
  const redisServer = await startRedisServer();
  const redis = connectRedis(redisServer.url, 'worker');
  await redisReady(redis);
  const prefix = randomQueuePrefix();
  const root = await mkdtemp(join(tmpdir(), 'spark-uploader-'));
  const archiveDir = join(root, 'archive');
  await mkdir(archiveDir);
  const receiver = await startUploadReceiver({
    dir: archiveDir,
    repos: ['master'],
    pathPrefix: '/_upload',
    writeInPlace: options.writeInPlace ?? false,
  });
  const configFile = join(root, 'spark.toml');
  await writeFile(
    configFile,
    [
      "LighthouseServer = 'tcp://127.0.0.1:5570'",
      "AcceptedJobs = ['package-build']",
      "GpgKeyID = 'DEADBEEF'",
      "MachineName = 'uploader-test'",
      `WorkspaceRoot = '${join(root, 'lkspark')}'`,
      `RedisUrl = '${redisServer.url}'`,
      `QueuePrefix = '${prefix}'`,
      '[uploader]',
      ...(options.uploaderKeys ?? ['IdleTimeout = 20']),
      '',
    ].join('\n'),
  );
  const { config } = loadConfig(configFile);
  const uploads = new Queue(QueueName.upload, { connection: redis, prefix });
  const reports = new Queue(REPORT_QUEUES.uploader, { connection: redis, prefix });
  const logLines: string[] = [];
  const sink = new PassThrough();
  sink.on('data', (chunk: Buffer) => logLines.push(...chunk.toString().split('\n').filter(Boolean)));
  const target: ArchiveTarget = { upload_fqdn: `127.0.0.1:${receiver.port}/_upload`, upload_method: 'http' };
  const setTargets = (repos: Record<string, ArchiveTarget>) =>
    redis.set(archiveTargetsKey(prefix), JSON.stringify({ archive_repos: repos, receivedAt: Date.now() })).then(() => undefined);
  await setTargets({ master: target });
  const statusExcerpts = async (uuid: string) => {
    const jobs = await reports.getJobs(['waiting', 'active', 'completed', 'failed', 'delayed', 'prioritized']);
    const excerpts: { seq: number; text: string }[] = [];
    for (const job of jobs) {
      const id = parseJobId(job?.id);
      if (id?.type === 'report' && id.slot.kind === 'status' && id.uuid === uuid) {
        excerpts.push({ seq: id.slot.seq, text: String((job?.data as { logExcerpt?: unknown }).logExcerpt) });
      }
    }
    return excerpts.sort((a, b) => a.seq - b.seq);
  };
  return {
    redisServer,
    redis,
    prefix,
    root,
    configFile,
    config,
    receiver,
    archiveDir,
    uploads,
    reports,
    logLines,
    logger: createLogger('spark-uploader', sink),
    setTargets,
    target,
    async addUpload(manifest) {
      // As the connector records each hand-out: `spark retry-upload <uuid>` finds the round through it.
      await redis.set(jobRecordKey(prefix, manifest.uuid), JSON.stringify(handOutRecord(manifest)));
      await uploads.add(QueueName.upload, { manifest }, { jobId: stageJobId(manifest, 'upload') });
    },
    settled(uuid, timeoutMs = 60_000) {
      const id = stageJobId({ uuid, round: TEST_ROUND }, 'upload');
      return waitFor(
        `upload ${id} to settle`,
        async () => {
          const state = await uploads.getJobState(id);
          return (state === 'completed' || state === 'failed') && state;
        },
        { timeoutMs },
      );
    },
    statusExcerpts,
    excerptMatching(uuid, pattern, timeoutMs = 30_000) {
      return waitFor(
        `a status excerpt of ${uuid} matching ${String(pattern)}`,
        async () => (await statusExcerpts(uuid)).find((excerpt) => pattern.test(excerpt.text))?.text,
        { timeoutMs, detail: async () => (await statusExcerpts(uuid)).map((e) => e.text).join('\n') },
      );
    },
    async close() {
      await receiver.close();
      await uploads.close();
      await reports.close();
      await redis.quit();
      await redisServer.stop();
      await rm(root, { recursive: true, force: true });
    },
  };
}
