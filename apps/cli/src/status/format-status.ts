import { QUEUE_NAMES } from '@spark/protocol';
import type { JobInFlight } from './collect-status.js';
import type { HostReport } from './status-command.js';

/** `1h 02m`, `3m 05s`, `12s`. */
export function formatDuration(ms: number): string {
  const s = Math.floor(ms / 1000);
  if (s < 60) return `${s}s`;
  const m = Math.floor(s / 60);
  if (m < 60) return `${m}m ${String(s % 60).padStart(2, '0')}s`;
  const h = Math.floor(m / 60);
  if (h < 48) return `${h}h ${String(m % 60).padStart(2, '0')}m`;
  return `${Math.floor(h / 24)}d ${h % 24}h`;
}

/** What an upload job is doing, in one line; null for other jobs and for an upload not started. */
function uploadLine(job: JobInFlight, now: number): string | null {
  const state = job.upload;
  if (!state || (job.state !== 'active' && job.state !== 'delayed')) return null;
  const givesUp = `gives up and reports the job failed in ${formatDuration(Math.max(0, state.giveUpAt - now))}`;
  if (state.phase === 'uploading') {
    return `uploading ${state.file} (file ${state.fileNumber} of ${state.files}, try ${state.tries}); ${givesUp}`;
  }
  const next = state.nextTryAt > now ? `in ${formatDuration(state.nextTryAt - now)}` : 'now';
  return `retrying: try ${state.tries} failed: ${state.problem}; next try ${next}, ${givesUp}`;
}

/** What a `sign` job waits for, in one line; null when it waits for nothing. */
function signLine(job: JobInFlight, now: number): string | null {
  const state = job.sign;
  if (!state || job.state !== 'delayed') return null;
  const next = state.nextTryAt > now ? `in ${formatDuration(state.nextTryAt - now)}` : 'now';
  return (
    `waiting for disk space since ${formatDuration(Math.max(0, now - state.since))} ago: ${state.problem}; ` +
    `next try ${next}, gives up and reports the job failed in ${formatDuration(Math.max(0, state.giveUpAt - now))}`
  );
}

/** Width of the queue-name column: the longest queue name. */
const QUEUE_COLUMN = Math.max(...QUEUE_NAMES.map((name) => name.length));

/** One line of the queue table: the name, then the counts right-aligned under their headings. */
function queueRow(
  name: string,
  waiting: number | string,
  active: number | string,
  delayed: number | string,
  failed: number | string,
): string {
  return `${name.padEnd(QUEUE_COLUMN)} ${String(waiting).padStart(8)} ${String(active).padStart(7)} ${String(delayed).padStart(8)} ${String(failed).padStart(7)}`;
}

/** The plain-text view of `spark status` for people. */
export function formatStatus(hosts: readonly HostReport[], now = Date.now()): string {
  const out: string[] = [];
  for (const host of hosts) {
    out.push(`== ${host.redis} (prefix ${host.prefix})`);
    if ('error' in host) {
      out.push(`cannot read this host's Redis: ${host.error}`, `health: exit ${host.health.exitCode}: Redis unreachable`, '');
      continue;
    }
    out.push(queueRow('queue', 'waiting', 'active', 'delayed', 'failed'));
    for (const name of QUEUE_NAMES) {
      const q = host.queues[name];
      out.push(queueRow(name, q.waiting, q.active, q.delayed, q.failed));
    }
    if (host.builders.length === 0) {
      out.push('builders: none alive (no heartbeat): the connector asks Lighthouse for nothing');
    } else {
      out.push('builders:');
      for (const b of host.builders) {
        out.push(
          `  ${b.id}: ${b.busy}/${b.slots} slots busy, ${b.architectures.join(' ')}, ${b.kinds.join(' ')}${b.accepting ? '' : ', draining'} (seen ${formatDuration(b.ageMs)} ago)`,
        );
      }
    }
    const link = host.lighthouse;
    if (!link) {
      out.push('lighthouse: no contact recorded (is spark-connector running?)');
    } else {
      const last = link.lastContactAt === null ? 'never' : `${formatDuration(now - link.lastContactAt)} ago`;
      out.push(`lighthouse: ${link.server}, last reply ${last}`);
      if (link.outageSince !== null) {
        out.push(`  OUTAGE for ${formatDuration(now - link.outageSince)}: ${link.lastError ?? 'no reply'}`);
      }
    }
    for (const block of host.blockedKinds) {
      out.push(
        `not asking for ${block.kind} jobs for ${formatDuration(block.until - now)}: job ${block.uuid} came back after this worker rejected it: ${block.reason}${block.needsOperator ? ' (an operator must fix this host; the job is failed after GiveUpRejectedAfter)' : ''}`,
      );
    }
    if (host.jobs.length === 0) {
      out.push('jobs in flight: none');
    } else {
      out.push('jobs in flight:');
      for (const job of host.jobs) {
        const failed = job.state === 'failed' ? ` — ${job.failedReason ?? 'failed'}` : '';
        out.push(
          `  ${job.uuid}  ${job.stage}/${job.state}  ${formatDuration(job.ageMs)}${job.attemptsMade > 0 ? `  (attempts ${job.attemptsMade})` : ''}${failed}`,
        );
        const doing = uploadLine(job, now) ?? signLine(job, now);
        if (doing) out.push(`    ${doing}`);
      }
    }
    for (const what of host.unreadable) out.push(`could not read ${what}`);
    if (host.health.problems.length === 0) out.push('health: ok');
    else {
      out.push(`health: exit ${host.health.exitCode}:`);
      for (const problem of host.health.problems) out.push(`  ${problem.message}`);
    }
    out.push('');
  }
  return out.join('\n');
}
