import type { Queue } from 'bullmq';
import { reportJobId, reportPayloadSchema, type ReportPayload } from '@spark/protocol';

/** Longest reason a report carries (the protocol's limit); longer ones keep their start. */
const MAX_REASON_CHARS = 4000;

/** Shortens a reason to what a report can carry. */
export function reportReason(reason: string): string {
  return reason.length > MAX_REASON_CHARS ? `${reason.slice(0, MAX_REASON_CHARS)}…` : reason;
}

/**
 * Adds a report for the connector, checked against the protocol, with its
 * deterministic job id (so a retried job never reports twice). Redis hiccups
 * are retried for about a minute before the error is passed on.
 */
export async function sendReport(queue: Queue, report: ReportPayload, statusSeq = 0): Promise<void> {
  const payload = reportPayloadSchema.parse(report);
  const jobId = reportJobId(payload, statusSeq);
  for (let attempt = 1; ; attempt++) {
    try {
      await queue.add(payload.kind, payload, { jobId });
      return;
    } catch (error) {
      if (attempt >= 30) throw error;
      await new Promise((resolve) => setTimeout(resolve, 2_000));
    }
  }
}
