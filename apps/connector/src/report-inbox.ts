import { WaitingError, type Queue, type Worker } from 'bullmq';
import { openWorker, type Logger, type Redis } from '@spark/service';
import type { QueueName } from '@spark/protocol';

/** A report the relay took from a sender's queue: its job id and its payload, not yet checked. */
export interface TakenReport {
  readonly id: string;
  readonly data: unknown;
}

/** What the relay's handler returns to put the report it holds back at the head of its queue, unsent. */
export const PUT_BACK = Symbol('put back');

/** What a report handler made of a report: a line saying what became of it (the report is then done with), or {@link PUT_BACK}. */
export type ReportOutcome = string | typeof PUT_BACK;

/**
 * Where a report is in its queue: `waiting` to be taken, `active` (taken, not
 * done with), or `other` (done with, unknown, or somewhere the relay never
 * takes it from).
 */
export type ReportState = 'waiting' | 'active' | 'other';

/**
 * One sender's report queue as the report relay uses it: what the relay
 * relies on, and nothing else (the BullMQ-backed one is
 * {@link bullmqReportInbox}; the unit tests use an in-memory one that
 * `test/report-inbox.contract.test.ts` holds to the same behaviour).
 *
 * - Reports are taken one at a time, oldest first, except that a report
 *   {@link ReportInbox.pullToHead | pulled to the head}, put back, or given
 *   back after a stop is taken next.
 * - A report taken by a relay that stopped without finishing it (killed) stays
 *   `active` until its lock expires; then the stalled check of a running inbox
 *   gives it back to the head of the queue.
 * - A report is done with once its handler returned a string; a handler that
 *   throws fails it (the relay's handler does not throw).
 */
export interface ReportInbox {
  /** Starts giving back reports a stopped relay held (now, and every stalled interval). */
  watchStalled(): Promise<void>;
  /** Takes reports one at a time and hands each to `handle` until {@link close}; resolves once closed. */
  run(handle: (report: TakenReport) => Promise<ReportOutcome>): Promise<void>;
  /** Reports taken and not done with. */
  activeCount(): Promise<number>;
  /** Where the report `id` is. */
  state(id: string): Promise<ReportState>;
  /** Moves the waiting report `id` to the head of the queue; does nothing to a report in another state. */
  pullToHead(id: string): Promise<void>;
  /** True while the queue keeps a report `id`, in any state (done with ones too, until trimmed). */
  holds(id: string): Promise<boolean>;
  /** Stops taking reports; the one in hand is finished first (its handler decides how). */
  close(): Promise<void>;
}

/** Lock and stalled-check timing of the relay's workers, in ms. */
export interface InboxLocks {
  /** How long a taken report stays locked after its holder stopped renewing it. */
  lockDurationMs: number;
  /** How often a running inbox looks for reports whose lock expired. */
  stalledIntervalMs: number;
}

/*
 * A report in flight when the connector is killed (during an outage it is in
 * flight for as long as the outage lasts) is taken up again once its lock
 * expires: a short lock makes that seconds, and no number of kills may make
 * BullMQ fail it as stalled — a report dropped is a job Lighthouse never
 * hears the end of, while sending one twice is harmless.
 */
export const RELAY_LOCKS: InboxLocks = { lockDurationMs: 10_000, stalledIntervalMs: 5_000 };
const MAX_STALLED_COUNT = 1_000_000;

/** BullMQ states the relay counts as waiting to be taken. */
const WAITING_STATES: readonly string[] = ['waiting', 'prioritized'];

/** A {@link ReportInbox} on BullMQ. */
export interface BullmqReportInbox extends ReportInbox {
  /**
   * Stops at once, as a killed connector does: the report in hand is not
   * finished and stays active, its lock no longer renewed, until the stalled
   * check of another inbox gives it back. For tests of that check.
   */
  kill(): Promise<void>;
}

/**
 * The report queue `name` as a {@link ReportInbox}: a BullMQ worker of
 * concurrency 1 on `connection` (a `worker` connection), and `queue` (the same
 * queue, opened by the caller) to look reports up.
 */
export function bullmqReportInbox(
  name: QueueName,
  queue: Queue,
  connection: Redis,
  prefix: string,
  logger: Logger,
  locks: InboxLocks = RELAY_LOCKS,
): BullmqReportInbox {
  let handle: ((report: TakenReport) => Promise<ReportOutcome>) | null = null;
  const worker: Worker = openWorker(
    name,
    async (job, token) => {
      if (!handle) throw new Error(`report inbox ${name}: a report was taken before run()`);
      const outcome = await handle({ id: job.id ?? '', data: job.data });
      if (outcome !== PUT_BACK) return outcome;
      // Back to the head of the queue, unsent, and not counted as a try.
      await job.moveToWait(token);
      throw new WaitingError();
    },
    connection,
    prefix,
    logger,
    {
      concurrency: 1,
      lockDuration: locks.lockDurationMs,
      stalledInterval: locks.stalledIntervalMs,
      maxStalledCount: MAX_STALLED_COUNT,
      autorun: false,
    },
  );
  return {
    watchStalled: () => worker.startStalledCheckTimer(),
    run(handler) {
      handle = handler;
      return worker.run();
    },
    activeCount: () => queue.getActiveCount(),
    async state(id) {
      const state = await queue.getJobState(id);
      if (WAITING_STATES.includes(state)) return 'waiting';
      return state === 'active' ? 'active' : 'other';
    },
    async pullToHead(id) {
      const job = await queue.getJob(id);
      if (job && WAITING_STATES.includes(await job.getState())) await job.changePriority({ priority: 0, lifo: true });
    },
    async holds(id) {
      return (await queue.getJob(id)) !== undefined;
    },
    close: () => worker.close(),
    kill: () => worker.close(true),
  };
}
