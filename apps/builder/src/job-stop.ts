/** Why a job was stopped before its commands finished. */
export type JobStopKind = 'time-limit' | 'idle-output' | 'cancelled' | 'draining';

/**
 * The reason carried by a job's AbortSignal (and returned for an idle-output
 * kill). Time limits end the job as a `failure`; cancellation by an operator
 * and a builder shutting down reject it back to Lighthouse.
 */
export class JobStop extends Error {
  constructor(
    readonly kind: JobStopKind,
    message: string,
  ) {
    super(message);
    this.name = 'JobStop';
  }

  /** True when the job goes back to Lighthouse for another worker rather than failing. */
  get rejectsJob(): boolean {
    return this.kind === 'cancelled' || this.kind === 'draining';
  }
}

/** The JobStop behind an aborted signal (a generic one when something else aborted it). */
export function stopReason(signal: AbortSignal): JobStop {
  const reason: unknown = signal.reason;
  return reason instanceof JobStop ? reason : new JobStop('cancelled', `stopped: ${String(reason)}`);
}
