import type { Logger } from '@spark/service';
import {
  ackReplySchema,
  describeIssues,
  excerptOrder,
  parseJobId,
  REPORT_KINDS_OF,
  REPORT_QUEUES,
  REPORT_REQUEST,
  REPORT_SENDERS,
  reportJobId,
  reportPayloadSchema,
  UNKNOWN_JOB_ERROR,
  type ExcerptPosition,
  type JobRound,
  type ReportPayload,
  type ReportSender,
} from '@spark/protocol';
import {
  backoffDelay,
  LighthouseUnreachable,
  UnreadableReply,
  type Backoff,
  type LighthouseLink,
  type RequestBody,
} from '@spark/lighthouse';
import type { Clock } from './clock.js';
import { dropLog } from './drop-log.js';
import { PUT_BACK, RELAY_LOCKS, type ReportInbox, type ReportOutcome, type TakenReport } from './report-inbox.js';
import type { RelayRecords } from './relay-records.js';

/** What the report relay needs. */
export interface ReportRelayDeps {
  /** Lighthouse: one request at a time. */
  link: Pick<LighthouseLink, 'request'>;
  /** Each sender's report queue (REPORT_QUEUES). */
  inboxes: Readonly<Record<ReportSender, ReportInbox>>;
  /** The job records, and the rounds the signer took. */
  records: RelayRecords;
  clock: Clock;
  backoff: Backoff;
  logger: Logger;
}

/** The running relay. */
export interface ReportRelay {
  /** Stops taking reports; the report in flight gets its current try, then goes back to the head of its queue unanswered. */
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
 * Where the status excerpt `id` of `report` stands among its round's excerpts,
 * or null when `id` is no status excerpt id of that round (a hand-written one:
 * such an excerpt is not put in order).
 */
function excerptPosition(sender: ReportSender, id: string, report: ReportPayload): ExcerptPosition | null {
  const parsed = parseJobId(id);
  if (parsed?.type !== 'report' || parsed.slot.kind !== 'status') return null;
  if (parsed.uuid !== report.uuid.toLowerCase() || parsed.round !== report.round) return null;
  return { sender, seq: parsed.slot.seq };
}

/**
 * True when a newer status excerpt of the same round is queued: Lighthouse keeps
 * only the latest excerpt, so this one need not be sent. Terminal reports are
 * never skipped.
 */
async function isSupersededStatus(inbox: ReportInbox, report: ReportPayload, position: ExcerptPosition | null): Promise<boolean> {
  if (position === null) return false;
  try {
    return await inbox.holds(reportJobId(report, { kind: 'status', seq: position.seq + 1 }));
  } catch {
    // Redis trouble: sending a stale excerpt is harmless, failing the report is not.
    return false;
  }
}

/** Why a report is not sent: `level` says whether that is expected (`warn`) or a sign of a broken or hostile sender (`error`). */
interface Refusal {
  level: 'warn' | 'error';
  reason: string;
}

/**
 * Why the relay must not send `report` from `sender`'s queue, or null when it
 * may (docs/architecture.md, "The report relay"). Each sender may send only its
 * own kinds of report, and only about a round that is the job's latest
 * hand-out here. The builder's credentials can write anything into its queue,
 * so what it says must also be about a job Lighthouse handed out to this
 * worker, and a rejection only while it holds the round: once the signer has
 * taken the round (`signer-rounds`), the round is not the builder's to reject.
 * (Its excerpts still go: the last one of a build is often sent after the
 * signer took the round, and Lighthouse shows only the latest.) Throws on a
 * Redis error.
 */
export async function reportRefusal(
  records: RelayRecords,
  sender: ReportSender,
  report: ReportPayload,
  position: ExcerptPosition | null = null,
): Promise<Refusal | null> {
  const request = REPORT_REQUEST[report.kind];
  if (!(REPORT_KINDS_OF[sender] as readonly string[]).includes(report.kind)) {
    return { level: 'error', reason: `the ${sender} does not send ${request}` };
  }
  const record = await records.read(report.uuid);
  if (record === null) {
    // The connector's queue may hold reports of a hand-out it could not record (a malformed job).
    return sender === 'builder' ? { level: 'error', reason: 'Lighthouse never handed this job out here (no job record)' } : null;
  }
  if (record.round !== report.round) {
    return BigInt(report.round) < BigInt(record.round)
      ? { level: 'warn', reason: `it is of an earlier round: Lighthouse has handed the job out again since (round ${record.round})` }
      : { level: 'error', reason: `round ${report.round} is no hand-out here (the latest is ${record.round})` };
  }
  if (report.kind === 'status' && (record.endedRound === report.round || record.endingRound === report.round)) {
    // A later sender's report of the round overtook it (the relay waits only for earlier senders' accepted and terminal reports),
    // or the relay was killed while it sent the end, which goes again before anything else of its queue.
    return { level: 'warn', reason: 'the round has ended at Lighthouse; an excerpt now would follow its end' };
  }
  const shown = record.shownExcerpt;
  if (position !== null && shown?.round === report.round && excerptOrder(position, shown) < 0) {
    // A later stage's excerpt, or a later one of this queue, went first: a queue the relay read
    // behind another (a backlog after an outage), or this one put back to the head after a kill.
    return { level: 'warn', reason: `Lighthouse already shows a newer excerpt of the round (the ${shown.sender}'s excerpt ${shown.seq})` };
  }
  if (report.kind !== 'status' && report.kind !== 'accepted' && record.endedRound === report.round) {
    // The relay was stopped after Lighthouse heard the end and before the report was done with.
    return { level: 'warn', reason: 'Lighthouse has already heard the end of the round' };
  }
  if (sender === 'builder' && report.kind === 'rejected' && (await records.signerRound(report.uuid)) === report.round) {
    // An honest builder never rejects a round it handed on: it rejects instead of handing on.
    return { level: 'error', reason: 'the builder handed the round on to the signer; it is not the builder’s to reject' };
  }
  return null;
}

/** ms between looks for a report a killed connector still holds. */
const ORPHAN_RECHECK_MS = 500;
/** Longest wait for those: past it, an active report is not a killed connector's (its lock would have expired). */
const ORPHAN_WAIT_MS = RELAY_LOCKS.lockDurationMs + 2 * RELAY_LOCKS.stalledIntervalMs;
/** ms between looks at the earlier senders' queues while a report waits for them. */
const TURN_RECHECK_MS = 20;
/** How long reports may wait in a sender's queue untaken before the relay stops holding later senders' reports for them (ms). */
export const STUCK_QUEUE_MS = 10_000;
/**
 * Reports an earlier sender's queue may finish while one of its reports that a
 * later sender's report waits for stays in it. That report was pulled to the
 * head of its queue, so the relay takes it after the report in hand and at
 * most one more its worker fetched before the pull; past that, something else
 * holds it.
 */
const PASSED_OVER_AFTER = 3;
/** An earlier sender's reports of a round that a later sender's report of the round waits for. */
const ORDERING_SLOTS = [{ kind: 'accepted' }, { kind: 'final' }] as const;

/**
 * Resolves once no report is active in any report queue. Called before the
 * relay takes its first report: the relay takes one at a time and one
 * connector runs per host, so an active report then is one a killed connector
 * held. BullMQ's stalled check gives it back to the head of its queue once its
 * lock expires; starting before that would send later reports of its job
 * first (a success before its accepted). A report still active after
 * {@link ORPHAN_WAIT_MS} is not such a one (a sender's credentials can mark
 * its queue's jobs active), and is not waited for. Resolves false if `signal`
 * aborts first.
 */
async function orphanedReportsReturned(
  inboxes: readonly ReportInbox[],
  clock: Clock,
  logger: Logger,
  signal: AbortSignal,
): Promise<boolean> {
  const giveUpAt = clock.now() + ORPHAN_WAIT_MS;
  let logged = false;
  for (;;) {
    let active: number;
    try {
      active = (await Promise.all(inboxes.map((inbox) => inbox.activeCount()))).reduce((sum, count) => sum + count, 0);
    } catch {
      active = 1;
    }
    if (active === 0) return true;
    if (clock.now() >= giveUpAt) {
      logger.warn({ active }, 'reports still active after every lock a stopped connector held has expired; starting the relay regardless');
      return true;
    }
    if (!logged) {
      logger.info('waiting for the report a previous connector held when it stopped, so reports stay in order');
      logged = true;
    }
    if (!(await clock.pause(ORPHAN_RECHECK_MS, signal))) return false;
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

/** What a report's turn ended in when the relay is stopping: the report goes back to its queue. */
const STOPPED = Symbol('stopped');

/**
 * Relays the report queues to Lighthouse (docs/architecture.md, "The report relay"):
 * one report at a time, each queue in its order, each retried until Lighthouse
 * answers. A round passes the senders in order ({@link REPORT_SENDERS}), and
 * each queues its `accepted` and terminal reports of a round before it hands
 * the round on; a report waits until the earlier senders' such reports of its
 * round are sent (`earlierUnsent` pulls them to the head of their
 * queues), so a job's `accepted` always comes first and its end last, and a
 * sender flooding its queue holds no other sender's reports. An excerpt that
 * comes after its round's end is dropped. The queues live in Redis, so
 * reports survive a connector restart; on shutdown an unanswered report goes
 * back to the head of its queue. A report that fails validation, or that its
 * sender may not send ({@link reportRefusal}), is dropped (and logged, within
 * bounds: {@link dropLog}): it must not block the ones behind it. A status
 * excerpt that a newer one of the same job superseded while Lighthouse was
 * away is dropped too.
 */
export function startReportRelay(deps: ReportRelayDeps): ReportRelay {
  const { clock, records } = deps;
  const stop = new AbortController();
  const drops = dropLog(deps.logger);
  // One report at a time across the queues: each send runs after the previous one ended.
  let tail: Promise<unknown> = Promise.resolve();
  const exclusive = <T>(send: () => Promise<T>): Promise<T> => {
    const run = tail.then(send);
    tail = run.catch(() => undefined);
    return run;
  };
  // Per sender: the ids of the reports in hand, how many it finished, and when one was last taken or finished.
  const inHand = new Map<ReportSender, Set<string>>(REPORT_SENDERS.map((sender) => [sender, new Set()]));
  const finished = new Map<ReportSender, number>();
  const lastSeen = new Map<ReportSender, number>(REPORT_SENDERS.map((sender) => [sender, clock.now()]));
  // Per earlier report a later one waits for (`<sender>/<id>`): its sender's finished count when first seen.
  const awaited = new Map<string, number>();
  const stuckLogged = new Set<string>();

  /**
   * The first earlier sender that still has to send its `accepted` or terminal
   * report of `round`, or null. Such a report is pulled to the head of its
   * queue, so however many reports were queued before it (a flood), the
   * later sender's report waits only for it and the report in hand. One the
   * relay cannot take (a paused queue, one held or put back by something else)
   * holds it only until the relay has finished {@link PASSED_OVER_AFTER}
   * other reports of that queue, or for {@link STUCK_QUEUE_MS} while that
   * queue is idle.
   */
  const earlierUnsent = async (sender: ReportSender, round: JobRound, keys: Set<string>): Promise<ReportSender | null> => {
    for (const earlier of REPORT_SENDERS.slice(0, REPORT_SENDERS.indexOf(sender))) {
      const inbox = deps.inboxes[earlier];
      for (const slot of ORDERING_SLOTS) {
        const id = reportJobId(round, slot);
        const key = `${earlier}/${id}`;
        keys.add(key);
        const state = await inbox.state(id);
        if (state === 'other') continue;
        if (inHand.get(earlier)?.has(id)) return earlier;
        const seen = awaited.get(key);
        if (seen === undefined) {
          awaited.set(key, finished.get(earlier) ?? 0);
          if (state === 'waiting') await inbox.pullToHead(id);
          return earlier;
        }
        const passedOver = (finished.get(earlier) ?? 0) - seen >= PASSED_OVER_AFTER;
        const idle = inHand.get(earlier)?.size === 0 && clock.now() - (lastSeen.get(earlier) ?? 0) > STUCK_QUEUE_MS;
        if (!passedOver && !idle) return earlier;
        if (!stuckLogged.has(key)) {
          stuckLogged.add(key);
          deps.logger.error(
            { jobId: round.uuid, round: round.round, queue: REPORT_QUEUES[earlier], report: id, state },
            `the ${earlier}'s ${slot.kind} report of this round stays in its queue where the relay cannot take it (paused, or held by something else); relaying the ${sender}'s reports of the round without it`,
          );
        }
      }
    }
    return null;
  };

  /** Runs `send` in the report's turn: alone, once no earlier sender has to send its reports of the round first. STOPPED when the relay stops first. */
  const inTurn = async (
    sender: ReportSender,
    round: JobRound,
    send: () => Promise<string | typeof STOPPED>,
  ): Promise<string | typeof STOPPED> => {
    const keys = new Set<string>();
    try {
      for (;;) {
        const turn = await exclusive(async (): Promise<{ result: string | typeof STOPPED } | null> => {
          if (stop.signal.aborted) return { result: STOPPED };
          const waitFor = await earlierUnsent(sender, round, keys).catch(() => null);
          return waitFor === null ? { result: await send() } : null;
        });
        if (turn) return turn.result;
        if (!(await clock.pause(TURN_RECHECK_MS, stop.signal))) return STOPPED;
      }
    } finally {
      for (const key of keys) {
        awaited.delete(key);
        stuckLogged.delete(key);
      }
    }
  };

  /** Checks what `sender` may say ({@link reportRefusal}); returns why the report was dropped, null when it may go, STOPPED when the relay stops first. */
  const refused = async (
    sender: ReportSender,
    report: ReportPayload,
    position: ExcerptPosition | null,
    log: Logger,
  ): Promise<string | null | typeof STOPPED> => {
    let refusal: Refusal | null;
    for (let tries = 0; ; tries++) {
      try {
        refusal = await reportRefusal(records, sender, report, position);
        break;
      } catch (error) {
        log.warn({ err: error }, 'cannot read the job record to check the report; trying again');
        if (!(await clock.pause(backoffDelay(deps.backoff, tries), stop.signal))) return STOPPED;
      }
    }
    if (refusal === null) return null;
    drops.drop(sender, refusal.level, log, `dropping ${REPORT_REQUEST[report.kind]} from the ${sender}'s report queue: ${refusal.reason}`);
    return `dropped: ${refusal.reason}`;
  };

  /** Checks and sends one report in its turn (the check again: the round may have moved on while it waited); returns what became of it. */
  const send = async (
    sender: ReportSender,
    report: ReportPayload,
    position: ExcerptPosition | null,
    log: Logger,
  ): Promise<string | typeof STOPPED> => {
    const refusal = await refused(sender, report, position, log);
    if (refusal !== null) return refusal;
    let reply: unknown;
    for (let tries = 0; ; tries++) {
      if (await isSupersededStatus(deps.inboxes[sender], report, position)) {
        log.info('dropping a status excerpt that a newer one superseded');
        return 'superseded';
      }
      const note =
        position !== null
          ? () => records.recordExcerpt(report, position)
          : report.kind !== 'accepted' && report.kind !== 'status'
            ? () => records.recordEnding(report)
            : null;
      if (note) {
        // Noted before it is sent: once Lighthouse may have heard it, no older excerpt may follow,
        // even if the relay is killed before it hears the reply.
        const noted = await note().then(
          () => true,
          (err: unknown) => (log.warn({ err }, 'cannot note the report in the job record before sending it; trying again'), false),
        );
        if (!noted) {
          if (!(await clock.pause(backoffDelay(deps.backoff, tries), stop.signal))) return STOPPED;
          continue;
        }
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
      if (!(await clock.pause(backoffDelay(deps.backoff, tries), stop.signal))) return STOPPED;
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
        await records
          .recordEnd(report, end, clock.now())
          .catch((err: unknown) => log.warn({ err }, 'cannot note the end of the round in the job record'));
      }
    }
    log.info(`relayed ${REPORT_REQUEST[report.kind]} to Lighthouse`);
    return 'delivered';
  };

  const handlerFor =
    (sender: ReportSender) =>
    async (taken: TakenReport): Promise<ReportOutcome> => {
      const { id } = taken;
      inHand.get(sender)?.add(id);
      lastSeen.set(sender, clock.now());
      try {
        const parsed = reportPayloadSchema.safeParse(taken.data);
        if (!parsed.success) {
          drops.drop(
            sender,
            'error',
            deps.logger.child({ report: id, queue: REPORT_QUEUES[sender] }),
            `dropping a malformed report: ${describeIssues(parsed.error)}`,
          );
          return 'dropped: malformed';
        }
        const report = parsed.data;
        const position = report.kind === 'status' ? excerptPosition(sender, id, report) : null;
        const log = deps.logger.child({ jobId: report.uuid, round: report.round, from: sender });
        // Checked before its turn too, so a flood of reports the relay drops costs no look at the other queues.
        const outcome =
          (await refused(sender, report, position, log)) ?? (await inTurn(sender, report, () => send(sender, report, position, log)));
        // Shutting down: the report goes back to the head of its queue, undelivered.
        return outcome === STOPPED ? PUT_BACK : outcome;
      } finally {
        inHand.get(sender)?.delete(id);
        finished.set(sender, (finished.get(sender) ?? 0) + 1);
        lastSeen.set(sender, clock.now());
      }
    };

  const inboxes = REPORT_SENDERS.map((sender) => [sender, deps.inboxes[sender]] as const);
  const started = Promise.all(inboxes.map(([, inbox]) => inbox.watchStalled()))
    .then(() => orphanedReportsReturned(Object.values(deps.inboxes), clock, deps.logger, stop.signal))
    .then((go) => {
      if (!go) return;
      for (const [sender, inbox] of inboxes) {
        void inbox.run(handlerFor(sender)).catch((err: unknown) => deps.logger.error({ err }, 'report relay stopped'));
      }
    })
    .catch((err: unknown) => deps.logger.error({ err }, 'cannot start the report relay'));
  return {
    async close() {
      stop.abort();
      await started;
      await Promise.all(inboxes.map(([, inbox]) => inbox.close()));
      drops.close();
    },
  };
}
