import { setTimeout as sleep } from 'node:timers/promises';
import type { Job, Queue } from 'bullmq';
import type { Logger } from '@spark/service';
import { reportJobId, reportPayloadSchema, stageJobId } from '@spark/protocol';

/** How long to wait for the relay to mark the earlier rejection delivered (it has just had Lighthouse's answer). */
const SETTLE_MS = 5_000;

async function finished(job: Job, deadline: number): Promise<boolean> {
  for (;;) {
    const state = await job.getState();
    if (state === 'completed' || state === 'failed') return true;
    if (Date.now() > deadline) return false;
    await sleep(100);
  }
}

/**
 * Makes room for a job Lighthouse hands out again after this worker rejected
 * it (`job-rejected` puts a job back to WAITING for any worker, this one
 * included). The earlier round's finished build job and reports hold the
 * deterministic ids the new round uses, and BullMQ would silently drop every
 * new one as a duplicate — the job would stay scheduled at Lighthouse for
 * ever. Removes them when the earlier round ended in a delivered rejection;
 * leaves everything alone otherwise (a first hand-out, or a job still in
 * flight here). Returns true when it removed an earlier round.
 */
export async function clearRejectedRound(buildQueue: Queue, reportQueue: Queue, uuid: string, logger: Logger): Promise<boolean> {
  const final = await reportQueue.getJob(`${uuid}.final`);
  if (!final) return false;
  const report = reportPayloadSchema.safeParse(final.data);
  if (!report.success || report.data.kind !== 'rejected') return false;
  const deadline = Date.now() + SETTLE_MS;
  if (!(await finished(final, deadline))) return false;
  const build = await buildQueue.getJob(stageJobId(uuid, 'build'));
  if (build && !(await finished(build, deadline))) return false;
  const earlier: Job[] = [];
  for (const id of [reportJobId({ kind: 'accepted', uuid, at: 0 }), final.id ?? '']) {
    const job = await reportQueue.getJob(id);
    if (job) earlier.push(job);
  }
  for (let seq = 1; ; seq++) {
    const job = await reportQueue.getJob(reportJobId({ kind: 'status', uuid, at: 0, logExcerpt: '' }, seq));
    if (!job) break;
    earlier.push(job);
  }
  for (const job of earlier) {
    if (!(await finished(job, deadline))) return false;
  }
  await build?.remove();
  for (const job of earlier) await job.remove();
  logger.info({ jobId: uuid }, 'Lighthouse handed out again a job this worker rejected before; taking it as a new job');
  return true;
}
