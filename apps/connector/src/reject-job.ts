import type { Queue } from 'bullmq';
import { reportJobId, type ReportPayload } from '@spark/protocol';

/**
 * Queues a `rejected` report for a job, so the relay gives it back to
 * Lighthouse in order with anything else reported about it. The report's id
 * is the job's terminal report id: a job is never both rejected and finished.
 */
export async function queueRejection(reportQueue: Queue, uuid: string, reason: string): Promise<void> {
  const report: ReportPayload = { kind: 'rejected', uuid, at: Date.now(), reason: reason.slice(0, 4096) };
  await reportQueue.add('rejected', report, { jobId: reportJobId(report) });
}
