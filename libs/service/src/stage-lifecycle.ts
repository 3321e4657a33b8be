import type { Logger } from 'pino';
import { parseJobId, reportJobId, reportPayloadSchema, reportSlot, type JobRound, type ReportPayload } from '@spark/protocol';
import type { JobOutbox } from './stage-queues.js';

/*
 * How a stage ends a round it cannot finish (docs/architecture.md, "Failure
 * model"): it reports the round to Lighthouse once, with the reason, through
 * its own report queue. The terminal report has one fixed id per round, so a
 * stage that gives up twice (its processor, then BullMQ's `failed` event; or a
 * restarted stage) reports once.
 */

/** Longest reason a report carries; longer ones keep their start. */
export const MAX_REASON_CHARS = 4000;

/** Shortens a reason to what a report can carry. */
export function reportReason(reason: string): string {
  return reason.length > MAX_REASON_CHARS ? `${reason.slice(0, MAX_REASON_CHARS)}…` : reason;
}

/** Tries and pause of {@link sendReport} while Redis is away: about a minute. */
const SEND_TRIES = 30;
const SEND_PAUSE_MS = 2_000;

/**
 * Adds a report for the connector to relay, checked against the protocol, with
 * its fixed id (`statusSeq` numbers status excerpts). Redis hiccups are
 * retried for about a minute before the error is passed on.
 */
export async function sendReport(reports: JobOutbox, report: ReportPayload, statusSeq = 0): Promise<void> {
  const payload = reportPayloadSchema.parse(report);
  const jobId = reportJobId(payload, reportSlot(payload, statusSeq));
  for (let attempt = 1; ; attempt++) {
    try {
      await reports.add(payload.kind, payload, { jobId });
      return;
    } catch (error) {
      if (attempt >= SEND_TRIES) throw error;
      await new Promise((resolve) => setTimeout(resolve, SEND_PAUSE_MS));
    }
  }
}

/**
 * How a stage gives a round up: `rejected` when another worker or a later
 * hand-out may do it (the build never ran to an end), `failed` when it ran and
 * cannot succeed.
 */
export type GiveUp = 'rejected' | 'failed';

/**
 * Reports that a stage gave `round` up, once, with the reason; logs it on the
 * stage's logger. The report says it was made at `options.at` (ms), the wall
 * clock's now by default.
 */
export async function giveUp(
  reports: JobOutbox,
  round: JobRound,
  outcome: GiveUp,
  reason: string,
  logger: Logger,
  options: { needsOperator?: boolean; bounced?: boolean; at?: number } = {},
): Promise<void> {
  logger.warn(
    { jobId: round.uuid, round: round.round, reason },
    `${reason}; ${outcome === 'rejected' ? 'rejecting it back to Lighthouse' : 'reporting it failed to Lighthouse'}`,
  );
  const { at = Date.now(), ...flags } = options;
  const report = { uuid: round.uuid, round: round.round, at, reason: reportReason(reason) };
  await sendReport(reports, outcome === 'rejected' ? { kind: 'rejected', ...report, ...flags } : { kind: 'failed', ...report });
}

/** What {@link reportFailedJob} needs to know about a stage. */
export interface StageGiveUp {
  /** How the stage ends a round it cannot finish. */
  outcome: GiveUp;
  /** The stage's name, for the reason ("the signer could not finish the job: …"). */
  stage: string;
  /** Runs before the report, e.g. to remove the round's workspace. */
  cleanUp?: (round: JobRound) => Promise<void>;
}

/**
 * What to do with a queue job that failed without the stage finishing it — its
 * process killed more often than the worker's `maxStalledCount`, an exception
 * the processor did not turn into a report: the round is given up with the
 * error as the reason, so it still ends at Lighthouse. A round the processor
 * already reported keeps its first report (same id). `now` says when (ms).
 */
export function reportFailedJob(
  reports: JobOutbox,
  stage: StageGiveUp,
  logger: Logger,
  now: () => number = Date.now,
): (jobId: string | undefined, error: Error) => void {
  return (jobId, error) => {
    // Every stage job's id names its round (job-ids.ts).
    const round = parseJobId(jobId);
    if (!round) {
      logger.error({ queueJobId: jobId, err: error }, `a ${stage.stage} job failed and names no job to report it by`);
      return;
    }
    const reason = `the ${stage.stage} could not finish the job: ${error.message}`;
    void (async () => {
      await stage.cleanUp?.(round).catch((err: unknown) => logger.warn({ err, jobId: round.uuid }, 'cannot clean up after a failed job'));
      await giveUp(reports, round, stage.outcome, reason, logger, { at: now() });
    })().catch((err: unknown) => logger.error({ err, jobId: round.uuid }, `cannot report a failed ${stage.stage} job`));
  };
}
