import { WaitingError, type Job, type Queue, type Worker } from 'bullmq';
import { isCurrentRound, openWorker, recordRoundEnd, type Logger, type Redis } from '@spark/service';
import {
  ackReplySchema,
  describeIssues,
  parseJobId,
  QueueName,
  REPORT_REQUEST,
  reportJobId,
  reportPayloadSchema,
  UNKNOWN_JOB_ERROR,
  type ReportPayload,
} from '@spark/protocol';
import { LighthouseUnreachable, UnreadableReply, type LighthouseLink, type RequestBody } from './lighthouse-link.js';
import { backoffDelay, pause, type Backoff } from './backoff.js';

/** What the report relay needs. */
export interface ReportRelayDeps {
  link: LighthouseLink;
  /** A `worker` Redis connection (maxRetriesPerRequest: null). */
  connection: Redis;
  prefix: string;
  /** The `report` queue, to look for newer status excerpts of a job. */
  reportQueue: Queue;
  backoff: Backoff;
  logger: Logger;
}

/** The running relay. */
export interface ReportRelay {
  /** Stops taking reports; the report in flight gets its current try, then goes back to the head of the queue unanswered. */
  close(): Promise<void>;
}

/** The Lighthouse request a report is relayed as. */
export function reportRequest(report: ReportPayload): RequestBody {
  const request = REPORT_REQUEST[report.kind];
  return request === 'job-status'
    ? { request, uuid: report.uuid, log_excerpt: report.kind === 'status' ? report.logExcerpt : '' }
    : { request, uuid: report.uuid };
}

/**
 * True when a newer status excerpt of the same round is queued: Lighthouse keeps
 * only the latest excerpt, so this one need not be sent. Terminal reports are
 * never skipped.
 */
export async function isSupersededStatus(reportQueue: Queue, jobId: string | undefined): Promise<boolean> {
  const id = parseJobId(jobId);
  if (id?.type !== 'report' || id.slot.kind !== 'status') return false;
  try {
    return (await reportQueue.getJob(reportJobId(id, { kind: 'status', seq: id.slot.seq + 1 }))) !== undefined;
  } catch {
    // Redis trouble: sending a stale excerpt is harmless, failing the report is not.
    return false;
  }
}

/*
 * A report in flight when the connector is killed (during an outage it is in
 * flight for as long as the outage lasts) is taken up again once its lock
 * expires: a short lock makes that seconds, and no number of kills may make
 * BullMQ fail it as stalled — a report dropped is a job Lighthouse never
 * hears the end of, while sending one twice is harmless.
 */
const LOCK_DURATION_MS = 10_000;
const STALLED_INTERVAL_MS = 5_000;
const MAX_STALLED_COUNT = 1_000_000;

/** ms between looks for a report a killed connector still holds. */
const ORPHAN_RECHECK_MS = 500;

/**
 * Resolves once no report is active. Called before the relay takes its first
 * report: the relay takes one at a time and one connector runs per host, so an
 * active report then is one a killed connector held. BullMQ's stalled check
 * gives it back to the head of the queue once its lock expires; starting
 * before that would send later reports of its job first (a success before its
 * accepted). Resolves false if `signal` aborts first.
 */
async function orphanedReportsReturned(reportQueue: Queue, logger: Logger, signal: AbortSignal): Promise<boolean> {
  let logged = false;
  for (;;) {
    let active: number;
    try {
      active = await reportQueue.getActiveCount();
    } catch {
      active = 1;
    }
    if (active === 0) return true;
    if (!logged) {
      logger.info('waiting for the report a previous connector held when it stopped, so reports stay in order');
      logged = true;
    }
    if (!(await pause(ORPHAN_RECHECK_MS, signal))) return false;
  }
}

/**
 * The start of a reply for a log line. A hostile reply can nest deeper than
 * JSON.stringify recurses; that must not fail the report it answered.
 */
function replyPreview(reply: unknown): string {
  try {
    return String(JSON.stringify(reply)).slice(0, 200);
  } catch (error) {
    return `(not printable: ${(error as Error).message})`;
  }
}

/**
 * Relays the `report` queue to Lighthouse: one report at a time, in queue
 * order, each retried until Lighthouse answers, so no report of a job ever
 * overtakes an earlier one. The queue lives in Redis, so reports survive a
 * connector restart; on shutdown an unanswered report goes back to the head
 * of the queue. A report that fails validation is logged and dropped: it can
 * never be delivered and must not block the ones behind it. A status excerpt
 * that a newer one of the same job superseded while Lighthouse was away is
 * dropped too.
 */
export function startReportRelay(deps: ReportRelayDeps): ReportRelay {
  const stop = new AbortController();
  const processor = async (job: Job, token?: string): Promise<string> => {
    const parsed = reportPayloadSchema.safeParse(job.data);
    if (!parsed.success) {
      deps.logger.error({ report: job.id }, `dropping a malformed report: ${describeIssues(parsed.error)}`);
      return 'dropped: malformed';
    }
    const report = parsed.data;
    const log = deps.logger.child({ jobId: report.uuid, round: report.round });
    if (!(await isCurrentRound(deps.connection, deps.prefix, report).catch(() => true))) {
      // Lighthouse handed the job out again since: what this round says is about a hand-out it has forgotten.
      log.warn(`dropping ${REPORT_REQUEST[report.kind]} of an earlier round: Lighthouse has handed the job out again since`);
      return 'superseded round';
    }
    let reply: unknown;
    for (let tries = 0; ; tries++) {
      if (report.kind === 'status' && (await isSupersededStatus(deps.reportQueue, job.id))) {
        log.info('dropping a status excerpt that a newer one superseded');
        return 'superseded';
      }
      let passing: string | null = null;
      try {
        reply = await deps.link.request(reportRequest(report));
        const ack = report.kind === 'status' ? null : ackReplySchema.safeParse(reply);
        if (ack?.success && ack.data !== true && ack.data.error !== UNKNOWN_JOB_ERROR) passing = ack.data.error;
        if (passing === null) break;
      } catch (error) {
        if (error instanceof UnreadableReply) {
          log.warn(`${REPORT_REQUEST[report.kind]}: ${error.message}; counting it as delivered`);
          return 'delivered: unreadable reply';
        }
        if (!(error instanceof LighthouseUnreachable)) throw error;
      }
      if (passing !== null) {
        // A database hiccup at Lighthouse ("Failed to handle request: …"): the report is not lost,
        // it is asked again, and the reports behind it wait, so their order holds.
        const level = tries < 3 ? 'warn' : 'error';
        log[level](`Lighthouse answered ${REPORT_REQUEST[report.kind]} with an error (${passing}); asking again (try ${tries + 1})`);
      }
      if (!(await pause(backoffDelay(deps.backoff, tries), stop.signal))) {
        // Shutting down: the report goes back to the head of the queue, undelivered.
        await job.moveToWait(token);
        throw new WaitingError();
      }
    }
    if (report.kind === 'rejected') log.info(`rejected the job back to Lighthouse: ${report.reason}`);
    if (report.kind !== 'status') {
      const ack = ackReplySchema.safeParse(reply);
      if (!ack.success) {
        log.warn(`${REPORT_REQUEST[report.kind]}: unexpected reply ${replyPreview(reply)}`);
      } else if (ack.data !== true) {
        // The job is unknown to Lighthouse: no retry will change that.
        log.warn(`Lighthouse refused ${REPORT_REQUEST[report.kind]}: ${ack.data.error}`);
        return `refused: ${ack.data.error}`;
      }
      const end =
        report.kind === 'rejected' ? { kind: report.kind, reason: report.reason, needsOperator: report.needsOperator ?? false } : report;
      // A bounced rejection handed the job back without a try: it says nothing new about the job.
      if (end.kind !== 'accepted' && !(report.kind === 'rejected' && report.bounced)) {
        await recordRoundEnd(deps.connection, deps.prefix, report, end, Date.now()).catch((err: unknown) =>
          log.warn({ err }, 'cannot note the end of the round in the job record'),
        );
      }
    }
    log.info(`relayed ${REPORT_REQUEST[report.kind]} to Lighthouse`);
    return 'delivered';
  };
  const worker: Worker = openWorker(QueueName.report, processor, deps.connection, deps.prefix, deps.logger, {
    concurrency: 1,
    lockDuration: LOCK_DURATION_MS,
    stalledInterval: STALLED_INTERVAL_MS,
    maxStalledCount: MAX_STALLED_COUNT,
    autorun: false,
  });
  const started = worker
    .startStalledCheckTimer()
    .then(() => orphanedReportsReturned(deps.reportQueue, deps.logger, stop.signal))
    .then((go) => {
      if (go) void worker.run().catch((err: unknown) => deps.logger.error({ err }, 'report relay stopped'));
    })
    .catch((err: unknown) => deps.logger.error({ err }, 'cannot start the report relay'));
  return {
    async close() {
      stop.abort();
      await started;
      await worker.close();
    },
  };
}
