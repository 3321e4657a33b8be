import type { Redis } from 'ioredis';
import { openQueue, readBuilderHeartbeats } from '@spark/service';
import {
  blockedKindSchema,
  blockedKindsKey,
  builderHeartbeatsKey,
  lighthouseStatusKey,
  lighthouseStatusSchema,
  parseJobId,
  QUEUE_NAMES,
  type BlockedKind,
  type BuilderHeartbeat,
  type LighthouseStatus,
  signStateSchema,
  uploadStateSchema,
  type QueueName,
  type SignState,
  type UploadState,
} from '@spark/protocol';

/** Job counts of one queue. */
export interface QueueCounts {
  waiting: number;
  active: number;
  delayed: number;
  failed: number;
  completed: number;
}

/** A job somewhere between `build` and the end of `upload`. */
export interface JobInFlight {
  uuid: string;
  /** Which hand-out of the job this is (job-ids.ts). */
  round: string;
  stage: (typeof STAGES)[number];
  state: 'waiting' | 'active' | 'delayed' | 'failed';
  /** ms since the job entered this stage. */
  ageMs: number;
  attemptsMade: number;
  failedReason: string | null;
  /** What an `upload` job is doing: sending which file, or why it failed and when it is tried next. */
  upload: UploadState | null;
  /** What a `sign` job waits for: disk space, since when, when it is tried next. */
  sign: SignState | null;
}

/** Everything `spark status` shows for one host. */
export interface HostStatus {
  redis: string;
  prefix: string;
  queues: Record<QueueName, QueueCounts>;
  builders: (BuilderHeartbeat & { ageMs: number })[];
  lighthouse: LighthouseStatus | null;
  jobs: JobInFlight[];
  /** Job kinds the connector leaves out of its requests for now, each with the job that came back rejected and why. */
  blockedKinds: BlockedKind[];
  /** What was there but could not be read (a heartbeat or the Lighthouse status that does not parse), each naming its key. */
  unreadable: string[];
}

const STAGES = ['build', 'sign', 'upload'] as const;
const STATES = ['active', 'waiting', 'delayed', 'failed'] as const;

/** Reads queue counts, live builders, the Lighthouse link and every job in flight from one host's Redis. */
export async function collectStatus(redis: Redis, redisLabel: string, prefix: string, now = Date.now()): Promise<HostStatus> {
  const queues = {} as Record<QueueName, QueueCounts>;
  const jobs: JobInFlight[] = [];
  for (const name of QUEUE_NAMES) {
    // Read-only: it reads as the operator, who may not write.
    const queue = openQueue(name, redis, prefix, null, { readOnly: true });
    try {
      const counts = await queue.getJobCounts('waiting', 'active', 'delayed', 'failed', 'completed', 'prioritized', 'waiting-children');
      queues[name] = {
        waiting: (counts['waiting'] ?? 0) + (counts['prioritized'] ?? 0) + (counts['waiting-children'] ?? 0),
        active: counts['active'] ?? 0,
        delayed: counts['delayed'] ?? 0,
        failed: counts['failed'] ?? 0,
        completed: counts['completed'] ?? 0,
      };
      if ((STAGES as readonly string[]).includes(name)) {
        for (const state of STATES) {
          for (const job of await queue.getJobs([state], 0, 199)) {
            const id = parseJobId(job?.id);
            if (!job || id?.type !== 'stage') continue;
            jobs.push({
              uuid: id.uuid,
              round: id.round,
              stage: name as JobInFlight['stage'],
              state,
              ageMs: Math.max(0, now - job.timestamp),
              attemptsMade: job.attemptsMade,
              failedReason: job.failedReason || null,
              upload: name === 'upload' ? parsedOrNull(uploadStateSchema, job.progress) : null,
              sign: name === 'sign' ? parsedOrNull(signStateSchema, job.progress) : null,
            });
          }
        }
      }
    } finally {
      await queue.close();
    }
  }

  const unreadable: string[] = [];
  const builders: HostStatus['builders'] = (
    await readBuilderHeartbeats(redis, prefix, {
      now,
      onMalformed: (id) => unreadable.push(`${builderHeartbeatsKey(prefix)} ${id}: not a builder heartbeat`),
    })
  ).map((beat) => ({ ...beat, ageMs: Math.max(0, now - beat.at) }));

  const linkText = await redis.get(lighthouseStatusKey(prefix));
  const link = lighthouseStatusSchema.safeParse(parseJson(linkText));
  if (linkText !== null && !link.success) unreadable.push(`${lighthouseStatusKey(prefix)}: not the connector's Lighthouse status`);
  const blockedKinds = Object.values(await redis.hgetall(blockedKindsKey(prefix)))
    .map((text) => blockedKindSchema.safeParse(parseJson(text)))
    .flatMap((parsed) => (parsed.success && parsed.data.until > now ? [parsed.data] : []));
  jobs.sort((a, b) => b.ageMs - a.ageMs);
  return {
    redis: redisLabel,
    prefix,
    queues,
    builders,
    blockedKinds,
    lighthouse: link.success ? link.data : null,
    jobs,
    unreadable,
  };
}

/** A job's progress as its stage writes it, or null (not started, or not the stage's). */
function parsedOrNull<T>(
  schema: { safeParse(value: unknown): { success: true; data: T } | { success: false } },
  progress: unknown,
): T | null {
  const parsed = schema.safeParse(progress);
  return parsed.success ? parsed.data : null;
}

function parseJson(text: string | null): unknown {
  if (text === null) return null;
  try {
    return JSON.parse(text) as unknown;
  } catch {
    return null;
  }
}
