import type { Queue } from 'bullmq';
import { giveUp, recordHandOut, type Logger, type Redis } from '@spark/service';
import { newRound, readJobReply, stageJobId, type BuildPayload, type Job, type JobReply } from '@spark/protocol';
import { LighthouseUnreachable, UnreadableReply, type LighthouseLink } from './lighthouse-link.js';
import { readBuilderCapacity } from './builder-capacity.js';
import { backoffDelay, pause, type Backoff } from './backoff.js';

/** What the job fetcher needs. */
export interface JobFetcherDeps {
  link: LighthouseLink;
  redis: Redis;
  prefix: string;
  buildQueue: Queue;
  reportQueue: Queue;
  logger: Logger;
  /** `AcceptedJobs`. */
  acceptedJobs: readonly string[];
  /** `Architectures`. */
  architectures: readonly string[];
  /** `MachineOwner`. */
  owner: string;
  /** ms between job requests while idle or without capacity. */
  pollIntervalMs: number;
  backoff: Backoff;
}

/**
 * Asks Lighthouse for jobs while live builders have free capacity, and puts
 * each valid job on `build` as a new round (job-ids.ts): every hand-out is
 * one, so a uuid handed out again after it ended here is built again. Advertises only the kinds and architectures that builders
 * with a free slot serve. A malformed or hostile job is never enqueued: it is
 * rejected back when its uuid is usable. Runs until `signal` aborts; a request
 * on the wire is finished first, so a job handed out is never dropped.
 */
export async function runJobFetcher(deps: JobFetcherDeps, signal: AbortSignal): Promise<void> {
  const { logger } = deps;
  let failures = 0;
  while (!signal.aborted) {
    let capacity;
    try {
      capacity = await readBuilderCapacity(deps.redis, deps.prefix, deps.buildQueue, logger);
    } catch (error) {
      logger.error({ err: error }, 'cannot read builder capacity from Redis; asking for no job until it answers');
      await pause(deps.pollIntervalMs, signal);
      continue;
    }
    const kinds = deps.acceptedJobs.filter((kind) => capacity.kinds.includes(kind));
    const architectures = deps.architectures.filter((arch) => capacity.architectures.includes(arch));
    if (capacity.available <= 0 || kinds.length === 0 || architectures.length === 0) {
      await pause(deps.pollIntervalMs, signal);
      continue;
    }
    let reply: unknown;
    try {
      reply = await deps.link.request({ request: 'job', owner: deps.owner, accepts: kinds, architectures });
      failures = 0;
    } catch (error) {
      if (error instanceof UnreadableReply) {
        logger.error(`job request: ${error.message}; nothing enqueued`);
        await pause(deps.pollIntervalMs, signal);
        continue;
      }
      if (!(error instanceof LighthouseUnreachable)) throw error;
      await pause(backoffDelay(deps.backoff, failures++), signal);
      continue;
    }
    const outcome = readJobReply(reply);
    try {
      await handleReply(deps, outcome, signal);
    } catch (error) {
      logger.error({ err: error }, 'cannot act on the job reply (Redis error)');
      await pause(deps.pollIntervalMs, signal);
    }
  }
}

async function handleReply(deps: JobFetcherDeps, outcome: JobReply, signal: AbortSignal): Promise<void> {
  const { logger } = deps;
  switch (outcome.type) {
    case 'none':
      await pause(deps.pollIntervalMs, signal);
      break;
    case 'error':
      logger.warn(`Lighthouse answered the job request with an error: ${outcome.message}`);
      await pause(deps.pollIntervalMs, signal);
      break;
    case 'invalid':
      if (outcome.uuid) {
        await giveUp(deps.reportQueue, newRound(outcome.uuid, Date.now()), 'rejected', outcome.reason, logger);
      } else {
        logger.error(`ignoring a job reply without a usable uuid (cannot reject it): ${outcome.reason}`);
      }
      await pause(deps.pollIntervalMs, signal);
      break;
    case 'job':
      await enqueueBuild(deps, outcome.job);
      break;
  }
}

async function enqueueBuild(deps: JobFetcherDeps, job: Job): Promise<void> {
  const log = deps.logger.child({ jobId: job.uuid });
  const receivedAt = Date.now();
  try {
    const { round } = await recordHandOut(deps.redis, deps.prefix, job, receivedAt);
    const payload: BuildPayload = { job, round, receivedAt };
    await deps.buildQueue.add(job.kind, payload, { jobId: stageJobId({ uuid: job.uuid, round }, 'build') });
    log.info({ kind: job.kind, architecture: job.architecture, round }, 'job queued for a builder');
  } catch (error) {
    // Redis is down: give the job straight back so another worker can take it.
    log.error({ err: error }, 'cannot queue the job in Redis; rejecting it back to Lighthouse');
    await deps.link.request({ request: 'job-rejected', uuid: job.uuid }).catch((rejectError: unknown) => {
      log.error({ err: rejectError }, 'could not reject the job either; Lighthouse will keep it scheduled for this worker');
    });
  }
}
