/** Why a job was stopped before its commands finished. */
export type JobStopKind = 'time-limit' | 'idle-output' | 'log-size' | 'log-error' | 'cancelled' | 'draining' | 'lock-lost' | 'superseded';

/**
 * The reason carried by a job's AbortSignal (and returned for a stop the
 * runner decided itself: idle output, a full or failing log). Limits the
 * build hit (`time-limit`, `idle-output`, `log-size`) end the job as a
 * `failure`; an operator's cancel, a builder shutting down and a log the host
 * cannot write reject it back to Lighthouse; a lost BullMQ lock means another
 * builder owns the job now, and a newer round of the job (Lighthouse handed it
 * out again) means the job is that round's now: either way this run reports
 * nothing at all.
 */
export class JobStop extends Error {
  constructor(
    readonly kind: JobStopKind,
    message: string,
  ) {
    super(message);
    this.name = 'JobStop';
  }

  /** True when the job's result is not this build's to report: it goes back to Lighthouse, or belongs to another builder. */
  get rejectsJob(): boolean {
    return this.kind === 'cancelled' || this.kind === 'draining' || this.kind === 'log-error' || this.reportsNothing;
  }

  /** True when this run must report nothing: the job belongs to another builder or to a newer round. */
  get reportsNothing(): boolean {
    return this.kind === 'lock-lost' || this.kind === 'superseded';
  }
}

/** The JobStop behind an aborted signal (a generic one when something else aborted it). */
export function stopReason(signal: AbortSignal): JobStop {
  const reason: unknown = signal.reason;
  return reason instanceof JobStop ? reason : new JobStop('cancelled', `stopped: ${String(reason)}`);
}
