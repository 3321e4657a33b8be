/*
 * What a compromised builder has in hand, for the programs that play one as
 * spark-builder: the deployment test's (tools/deploy-test/hostile-builder.ts,
 * in the booted machine) and the hostile-build suite's
 * (tools/hostile-build/as-builder.ts, on this host). Nothing here gives them
 * more than the builder has: its own Redis password, its own queues, the
 * control files it writes anyway.
 */
import { createHash } from 'node:crypto';
import { mkdir, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { Worker } from 'bullmq';
import type { SparkConfig } from '@spark/config';
import {
  buildPayloadSchema,
  builderCapacityChannel,
  jobArtifactsDir,
  jobWorkspaceDir,
  queueKey,
  QueueName,
  type JobRound,
  type Manifest,
  type PackageBuildJob,
} from '@spark/protocol';
import { connectRedis, redisLogin, redisReady, removeBuilderHeartbeat, writeBuilderHeartbeat, type Redis } from '@spark/service';

/** SHA-256 in hex. */
export const sha256 = (data: Buffer | string): string => createHash('sha256').update(data).digest('hex');

/** Prints one JSON line for the test that runs the program. */
export const out = (line: Record<string, unknown>): void => void process.stdout.write(`${JSON.stringify(line)}\n`);

/** One thing tried: what came back (an error code, a message), for the test to judge. */
export interface Attempt {
  name: string;
  /** `refused` when the attempt failed, `allowed` when it went through. */
  outcome: 'refused' | 'allowed';
  detail: string;
}

/** Runs `body` and says whether it went through, with the value or the error (its code and message). */
export async function attempt(name: string, body: () => Promise<unknown>): Promise<Attempt> {
  try {
    const value = await body();
    return {
      name,
      outcome: 'allowed',
      detail: typeof value === 'string' ? value.slice(0, 300) : JSON.stringify(value ?? null).slice(0, 300),
    };
  } catch (error) {
    const e = error as NodeJS.ErrnoException & { stderr?: string; code?: unknown };
    const detail = [typeof e.code === 'string' || typeof e.code === 'number' ? `code ${e.code}` : '', e.stderr?.trim() || e.message]
      .filter(Boolean)
      .join(': ');
    return { name, outcome: 'refused', detail: detail.slice(0, 400) };
  }
}

/** A Redis connection with the builder's own credentials (`RedisCredentialsDir`), ready. */
export async function builderRedis(config: SparkConfig): Promise<Redis> {
  const redis = connectRedis(config.redisUrl, 'worker', redisLogin(config.redisCredentialsDir, 'builder'));
  await redisReady(redis);
  return redis;
}

/** A Redis command as a compromised builder sends it; `name` leaves out the key or channel it names. */
export interface RedisTry {
  name: string;
  args: string[];
}

/**
 * The commands that list, count or watch keys and clients whatever the key
 * patterns say, as the builder would send them — the ones no service user may
 * run (NO_LISTING in libs/service redis-acl.ts). OBJECT and MEMORY USAGE name
 * a key the builder may reach (its `build` queue's meta key), PUBSUB NUMSUB a
 * channel it may use, so only the command itself can be what Redis refuses.
 */
export function listingCommands(prefix: string): RedisTry[] {
  const ownKey = queueKey(prefix, QueueName.build, 'meta');
  const named = (...args: string[]): RedisTry => ({ name: args.join(' '), args });
  return [
    { name: 'SCAN', args: ['SCAN', '0', 'COUNT', '1000'] },
    named('KEYS', '*'),
    named('RANDOMKEY'),
    named('DBSIZE'),
    { name: 'OBJECT ENCODING', args: ['OBJECT', 'ENCODING', ownKey] },
    { name: 'MEMORY USAGE', args: ['MEMORY', 'USAGE', ownKey] },
    named('MEMORY', 'STATS'),
    named('CLIENT', 'LIST'),
    named('CLIENT', 'TRACKING', 'ON', 'BCAST'),
    named('PUBSUB', 'CHANNELS'),
    { name: 'PUBSUB NUMSUB', args: ['PUBSUB', 'NUMSUB', builderCapacityChannel(prefix)] },
  ];
}

/** Sends each command with `redis` (the builder's connection) and says what came back. */
export async function tryCommands(redis: Redis, commands: readonly RedisTry[]): Promise<Attempt[]> {
  const tries: Attempt[] = [];
  for (const { name, args } of commands) tries.push(await attempt(name, () => redis.call(args[0] ?? '', ...args.slice(1))));
  return tries;
}

/** Control-file paragraph text from `[field, value]` pairs (multi-line values given as arrays). */
export function controlText(fields: [string, string | string[]][]): string {
  return `${fields.map(([name, value]) => (Array.isArray(value) ? [`${name}:`, ...value.map((v) => ` ${v}`)].join('\n') : `${name}: ${value}`)).join('\n')}\n`;
}

/** A file a control file lists. */
export interface ListedFile {
  name: string;
  data: Buffer;
}

/** The `Checksums-Sha1`, `Checksums-Sha256` and `Files` fields listing `files`. */
export function fileLists(files: readonly ListedFile[]): [string, string[]][] {
  return [
    ['Checksums-Sha1', files.map((f) => `${createHash('sha1').update(f.data).digest('hex')} ${f.data.length} ${f.name}`)],
    ['Checksums-Sha256', files.map((f) => `${sha256(f.data)} ${f.data.length} ${f.name}`)],
    ['Files', files.map((f) => `${createHash('md5').update(f.data).digest('hex')} ${f.data.length} misc optional ${f.name}`)],
  ];
}

/** What a `.changes` says, field by field (what a builder writes into it). */
export interface ChangesFields {
  source: string;
  version: string;
  /** The `Architecture` field. */
  architecture: string;
  /** The `Binary` field. */
  binary: string;
  distribution: string;
  files: readonly ListedFile[];
}

/** The text of a `.changes` (Format 1.8) with these fields. */
export function changesText(fields: ChangesFields): string {
  return controlText([
    ['Format', '1.8'],
    ['Date', new Date().toUTCString()],
    ['Source', fields.source],
    ['Binary', fields.binary],
    ['Architecture', fields.architecture],
    ['Version', fields.version],
    ['Distribution', fields.distribution],
    ['Urgency', 'medium'],
    ['Maintainer', 'Hostile Builder <hostile@example.invalid>'],
    ['Changed-By', 'Hostile Builder <hostile@example.invalid>'],
    ['Description', [`${fields.source} - hostile`]],
    ['Changes', [`${fields.source} (${fields.version}) ${fields.distribution}; urgency=medium`]],
    ...fileLists(fields.files),
  ]);
}

/** The text of a job's `.dud` (Format 1.8) naming job `uuid` and `result`, listing `files`. */
export function dudText(uuid: string, architecture: string, result: string, files: readonly ListedFile[]): string {
  return controlText([
    ['Format', '1.8'],
    ['Date', new Date().toUTCString()],
    ['Architecture', architecture],
    ['X-Spark-Job', uuid],
    ['X-Spark-Result', result],
    ...fileLists(files),
  ]);
}

/**
 * Writes `files` into the round's artifacts dir (its workspace made afresh,
 * as a builder starts a round) and returns the manifest that hands them to
 * the signer, with each file's size and SHA-256 and a `success` result.
 */
export async function writeRound(
  workspacesDir: string,
  round: JobRound,
  repo: string,
  files: readonly ListedFile[],
  control: Pick<Manifest, 'changes' | 'dud'>,
): Promise<Manifest> {
  await rm(jobWorkspaceDir(workspacesDir, round), { recursive: true, force: true });
  const dir = jobArtifactsDir(workspacesDir, round);
  await mkdir(dir, { recursive: true });
  for (const file of files) await writeFile(join(dir, file.name), file.data);
  return {
    uuid: round.uuid,
    round: round.round,
    repo,
    result: 'success',
    files: files.map((file) => ({ name: file.name, size: file.data.length, sha256: sha256(file.data) })),
    ...control,
  };
}

/** The id the stand-in builder's heartbeat has. */
const STAND_IN_ID = 'hostile@1';

/**
 * Stands in for the builder: announces `count` free slots for package builds
 * (a heartbeat and the capacity channel, as a builder does), takes `count`
 * jobs from the `build` queue and hands each to `handle` with its round.
 * Resolves once `handle` has run for all of them, with the heartbeat
 * removed; rejects after `timeoutMs` (default 240 s).
 */
export async function takeBuildJobs(
  config: SparkConfig,
  redis: Redis,
  count: number,
  handle: (job: PackageBuildJob, round: JobRound) => Promise<void>,
  timeoutMs = 240_000,
): Promise<void> {
  const p = config.queuePrefix;
  const blocking = await builderRedis(config);
  let taken = 0;
  const beat = () =>
    writeBuilderHeartbeat(redis, p, {
      id: STAND_IN_ID,
      slots: count,
      busy: 0,
      kinds: ['package-build'],
      architectures: [...config.architectures],
      accepting: taken < count,
      at: Date.now(),
    });
  await beat();
  await redis.publish(builderCapacityChannel(p), STAND_IN_ID);
  const timer = setInterval(() => void beat().catch(() => undefined), 2_000);
  let resolveAll = () => {};
  const allTaken = new Promise<void>((resolve) => (resolveAll = resolve));
  const worker = new Worker(
    QueueName.build,
    async (queued) => {
      const { job, round } = buildPayloadSchema.parse(queued.data);
      if (job.kind !== 'package-build') throw new Error(`unexpected ${job.kind} job`);
      await handle(job, { uuid: job.uuid.toLowerCase(), round });
      taken += 1;
      if (taken >= count) resolveAll();
    },
    { connection: blocking, prefix: p, concurrency: count, removeOnComplete: { count: 100 }, removeOnFail: { count: 100 } },
  );
  worker.on('error', () => undefined);
  let deadline: NodeJS.Timeout | undefined;
  try {
    await Promise.race([
      allTaken,
      new Promise<never>((_, reject) => {
        deadline = setTimeout(() => reject(new Error(`took ${taken} of ${count} jobs in ${timeoutMs / 1000} s`)), timeoutMs);
      }),
    ]);
  } finally {
    clearTimeout(deadline);
    clearInterval(timer);
    await worker.close();
    await removeBuilderHeartbeat(redis, p, STAND_IN_ID);
    await blocking.quit();
  }
}
