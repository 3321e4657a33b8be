import { giveUp, sendReport, type JobOutbox, type Logger, type WatchedQueue } from '@spark/service';
import { newRound, readJobReply, stageJobId, type BuildPayload, type Job, type JobReply, type JobRound } from '@spark/protocol';
import { backoffDelay, LighthouseUnreachable, UnreadableReply, type Backoff, type LighthouseLink } from '@spark/lighthouse';
import { readBuilderCapacity, type BuilderBoard } from './builder-capacity.js';
import { haveUploadTargets } from './archive-targets.js';
import type { Clock } from './clock.js';
import type { LighthouseNotes } from './lighthouse-notes.js';
import type { JobRecords } from './relay-records.js';
import type { Waker } from './waker.js';
import { blockKind, inCooldown, readBlockedKinds, rejectionCooldownMs, type KindBlockStore } from './kind-blocks.js';

/** What the job fetcher needs. */
export interface JobFetcherDeps {
  link: LighthouseLink;
  clock: Clock;
  /** Where a job goes for a builder; counted against capacity too. */
  buildQueue: JobOutbox & WatchedQueue;
  /** The `sign` and `upload` queues, counted against capacity (see computeCapacity). */
  signQueue: WatchedQueue;
  uploadQueue: WatchedQueue;
  /** The connector's report queue. */
  reports: JobOutbox;
  builders: BuilderBoard;
  records: JobRecords;
  kindBlocks: KindBlockStore;
  /** Where the upload targets are stored (no job is taken without one). */
  notes: LighthouseNotes;
  logger: Logger;
  /** `AcceptedJobs`. */
  acceptedJobs: readonly string[];
  /** `Architectures`. */
  architectures: readonly string[];
  /** `MachineOwner`. */
  owner: string;
  /** ms between job requests while idle or without capacity. */
  pollIntervalMs: number;
  /** `GiveUpRejectedAfter` in ms: a job only an operator can unblock is reported failed this long after its first rejection. */
  giveUpRejectedAfterMs: number;
  backoff: Backoff;
  /** Cool-down of a job this worker rejected (default REJECTION_COOLDOWN: 30 s doubling to 30 min). */
  rejectionCooldown?: Backoff;
  /** Ends an idle pause early when a builder announces capacity (a slot freed, a builder registered). */
  waker?: Waker;
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
  const { clock, logger } = deps;
  const pause = (ms: number) => clock.pause(ms, signal);
  let failures = 0;
  while (!signal.aborted) {
    let capacity;
    try {
      capacity = await readBuilderCapacity(
        deps.builders,
        { build: deps.buildQueue, sign: deps.signQueue, upload: deps.uploadQueue },
        clock.now(),
      );
    } catch (error) {
      logger.error({ err: error }, 'cannot read builder capacity from Redis; asking for no job until it answers');
      await pause(deps.pollIntervalMs);
      continue;
    }
    let blocked: string[];
    try {
      blocked = (await readBlockedKinds(deps.kindBlocks, clock.now(), logger)).map((block) => block.kind);
    } catch (error) {
      logger.error({ err: error }, 'cannot read the blocked job kinds from Redis; asking for no job until it answers');
      await pause(deps.pollIntervalMs);
      continue;
    }
    if (!(await haveUploadTargets(deps.notes).catch(() => false))) {
      // archive-info named no usable repository (logged where it was read): nowhere to upload to.
      await pause(deps.pollIntervalMs);
      continue;
    }
    const kinds = deps.acceptedJobs.filter((kind) => capacity.kinds.includes(kind) && !blocked.includes(kind));
    const architectures = deps.architectures.filter((arch) => capacity.architectures.includes(arch));
    if (capacity.available <= 0 || kinds.length === 0 || architectures.length === 0) {
      await idle(deps, signal);
      continue;
    }
    let reply: unknown;
    try {
      reply = await deps.link.request({ request: 'job', owner: deps.owner, accepts: kinds, architectures });
      failures = 0;
    } catch (error) {
      if (error instanceof UnreadableReply) {
        logger.error(`job request: ${error.message}; nothing enqueued`);
        await pause(deps.pollIntervalMs);
        continue;
      }
      if (!(error instanceof LighthouseUnreachable)) throw error;
      await pause(backoffDelay(deps.backoff, failures++));
      continue;
    }
    const outcome = readJobReply(reply);
    try {
      await handleReply(deps, outcome, signal);
    } catch (error) {
      logger.error({ err: error }, 'cannot act on the job reply (Redis error)');
      await pause(deps.pollIntervalMs);
    }
  }
}

/**
 * Waits one `PollInterval` while there is nothing to ask for or Lighthouse has
 * nothing: the idle rate is one request per interval. A builder announcing
 * capacity ends the wait at once (docs/architecture.md, "Capacity").
 */
function idle(deps: JobFetcherDeps, signal: AbortSignal): Promise<boolean> {
  return deps.waker ? deps.waker.pause(deps.pollIntervalMs, signal) : deps.clock.pause(deps.pollIntervalMs, signal);
}

async function handleReply(deps: JobFetcherDeps, outcome: JobReply, signal: AbortSignal): Promise<void> {
  const { logger } = deps;
  const pause = (ms: number) => deps.clock.pause(ms, signal);
  switch (outcome.type) {
    case 'none':
      await idle(deps, signal);
      break;
    case 'error':
      logger.warn(`Lighthouse answered the job request with an error: ${outcome.message}`);
      await pause(deps.pollIntervalMs);
      break;
    case 'invalid':
      if (outcome.uuid) {
        // Malformed beyond use: no worker can run it, and rejecting it would put it first in line
        // again. Failing it ends it at Lighthouse, with the reason as its log excerpt.
        await failWithExcerpt(deps, newRound(outcome.uuid, deps.clock.now()), `this worker cannot run the job: ${outcome.reason}`);
      } else {
        logger.error(`ignoring a job reply without a usable uuid (cannot reject it): ${outcome.reason}`);
      }
      await pause(deps.pollIntervalMs);
      break;
    case 'job':
      await enqueueBuild(deps, outcome.job);
      break;
  }
}

/** Reports a round failed with `reason` also as its log excerpt (Lighthouse shows the excerpt on the job's page). */
async function failWithExcerpt(deps: JobFetcherDeps, round: JobRound, reason: string): Promise<void> {
  const at = deps.clock.now();
  await sendReport(deps.reports, { kind: 'status', ...round, at, logExcerpt: reason }, 1);
  await giveUp(deps.reports, round, 'failed', reason, deps.logger, { at });
}

/**
 * Takes a hand-out: a job this worker rejected within its cool-down is not built
 * again at once — its kind is left out of requests for a while and it goes
 * back (or, when only an operator can fix its cause and it has kept coming back
 * for `GiveUpRejectedAfter`, it is failed); anything else goes on `build`.
 */
async function enqueueBuild(deps: JobFetcherDeps, job: Job): Promise<void> {
  const log = deps.logger.child({ jobId: job.uuid });
  const receivedAt = deps.clock.now();
  try {
    // The new record carries the job's rejection history over from the round before.
    const record = await deps.records.recordHandOut(job, receivedAt);
    const round = { uuid: record.uuid, round: record.round };
    if (record.needsOperator && record.firstRejectedAt !== null && receivedAt - record.firstRejectedAt >= deps.giveUpRejectedAfterMs) {
      const hours = ((receivedAt - record.firstRejectedAt) / 3600_000).toFixed(1);
      const cause = record.lastRejection ?? 'rejected';
      await failWithExcerpt(deps, round, `${cause} — rejected ${record.rejections} times over ${hours} h; an operator must fix this host`);
      return;
    }
    if (inCooldown(record, receivedAt, deps.rejectionCooldown)) {
      const cause = record.lastRejection ?? 'rejected';
      const until = record.lastRejectedAt + rejectionCooldownMs(record.rejections, deps.rejectionCooldown);
      await blockKind(
        deps.kindBlocks,
        { kind: job.kind, until, uuid: round.uuid, reason: cause, needsOperator: record.needsOperator },
        deps.clock.now(),
        log,
      );
      await giveUp(deps.reports, round, 'rejected', `rejected again within its back-off: ${cause}`, log, {
        needsOperator: record.needsOperator,
        bounced: true,
        at: deps.clock.now(),
      });
      return;
    }
    const payload: BuildPayload = { job, round: record.round, receivedAt };
    await deps.buildQueue.add(job.kind, payload, { jobId: stageJobId(round, 'build') });
    log.info({ kind: job.kind, architecture: job.architecture, round: record.round }, 'job queued for a builder');
  } catch (error) {
    // Redis is down: give the job straight back so another worker can take it.
    log.error({ err: error }, 'cannot queue the job in Redis; rejecting it back to Lighthouse');
    await deps.link.request({ request: 'job-rejected', uuid: job.uuid }).catch((rejectError: unknown) => {
      log.error({ err: rejectError }, 'could not reject the job either; Lighthouse will keep it scheduled for this worker');
    });
  }
}
