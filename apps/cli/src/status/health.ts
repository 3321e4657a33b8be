import type { HostStatus } from './collect-status.js';
import { formatDuration } from './format-status.js';

/**
 * Exit codes of `spark status` for monitoring checks. When several hold, the
 * code is the first of: Redis unreachable (nothing else can be known), the
 * Lighthouse link down (no jobs come in, no reports go out), no live builder
 * (jobs wait), a stage stuck; with several hosts, the first over all of them.
 */
export const STATUS_EXIT = {
  healthy: 0,
  /** A job has sat in a stage for longer than it may (see {@link StuckLimits}). */
  stageStuck: 3,
  /** No builder heartbeat: nothing takes build jobs, and the connector asks Lighthouse for none. */
  noBuilder: 4,
  /** The connector reports an outage, has recorded no contact at all, or none for longer than {@link StuckLimits.linkSilentMs}. */
  lighthouseDown: 5,
  /** A host's Redis cannot be read (sysexits' EX_UNAVAILABLE, as before). */
  redisUnreachable: 69,
} as const;

/** The order in which the codes win over each other, first wins. */
const PRECEDENCE: readonly number[] = [
  STATUS_EXIT.redisUnreachable,
  STATUS_EXIT.lighthouseDown,
  STATUS_EXIT.noBuilder,
  STATUS_EXIT.stageStuck,
];

/** The exit code for problems `codes`: the first of {@link PRECEDENCE} among them, else 0. */
export function worstCode(codes: Iterable<number>): number {
  const seen = new Set(codes);
  return PRECEDENCE.find((code) => seen.has(code)) ?? STATUS_EXIT.healthy;
}

/** One thing wrong with a host, with the exit code it stands for. */
export interface HealthProblem {
  code: number;
  message: string;
}

/** When a job counts as stuck, in ms. */
export interface StuckLimits {
  /** A job waiting (or delayed, or an active sign job) this long in a stage is stuck (default 15 min: longer than the 10 min StartTimeout after which the connector rejects a build no builder starts). */
  stuckAfterMs: number;
  /** `[builder] MaxBuildTime`: an active build older than this plus `stuckAfterMs` outlived the builder's own limit. */
  maxBuildTimeMs: number;
  /**
   * The connector talks to Lighthouse at least every `ArchiveInfoInterval` (300 s),
   * and every `PollInterval` while a builder is idle: a last contact older than this
   * (default 15 min) means the connector is not running.
   */
  linkSilentMs: number;
}

/** Default limits: 15 min stuck, MaxBuildTime's default 24 h, 15 min of silence. */
export const DEFAULT_STUCK_LIMITS: StuckLimits = { stuckAfterMs: 15 * 60_000, maxBuildTimeMs: 24 * 3600_000, linkSilentMs: 15 * 60_000 };

/** What is wrong with one host, worst first. */
export function assessHealth(host: HostStatus, limits: StuckLimits = DEFAULT_STUCK_LIMITS, now = Date.now()): HealthProblem[] {
  const problems: HealthProblem[] = [];
  const link = host.lighthouse;
  if (!link) {
    problems.push({ code: STATUS_EXIT.lighthouseDown, message: 'Lighthouse link: no contact recorded (is spark-connector running?)' });
  } else if (link.outageSince !== null) {
    problems.push({
      code: STATUS_EXIT.lighthouseDown,
      message: `Lighthouse link: outage for ${formatDuration(now - link.outageSince)}: ${link.lastError ?? 'no reply'}`,
    });
  } else if (link.lastContactAt === null || now - link.lastContactAt > limits.linkSilentMs) {
    const last = link.lastContactAt === null ? 'never' : `${formatDuration(now - link.lastContactAt)} ago`;
    problems.push({ code: STATUS_EXIT.lighthouseDown, message: `Lighthouse link: last reply ${last} (is spark-connector running?)` });
  }
  if (host.builders.length === 0) {
    problems.push({
      code: STATUS_EXIT.noBuilder,
      message: 'builders: none alive (no heartbeat): build jobs wait, and no new ones are taken',
    });
  }
  for (const job of host.jobs) {
    const age = formatDuration(job.ageMs);
    let why: string | null = null;
    if ((job.state === 'waiting' || job.state === 'delayed') && job.ageMs > limits.stuckAfterMs) {
      if (job.stage === 'upload' && job.upload?.phase === 'retrying' && job.upload.giveUpAt + limits.stuckAfterMs > now) continue;
      // A sign job waiting for disk space is stuck too, until an operator frees some: the reason is the signer's.
      if (job.stage === 'sign' && job.sign) why = `${job.state} for ${age}: ${job.sign.problem}`;
      else
        why = `${job.state} for ${age}: ${job.stage === 'build' ? 'no builder takes it' : `spark-${job.stage === 'sign' ? 'signer' : 'uploader'} does not take it`}`;
    } else if (job.state === 'active' && job.stage === 'build' && job.ageMs > limits.maxBuildTimeMs + limits.stuckAfterMs) {
      why = `building for ${age}, past MaxBuildTime (${formatDuration(limits.maxBuildTimeMs)}): the builder should have stopped it`;
    } else if (job.state === 'active' && job.stage === 'sign' && job.ageMs > limits.stuckAfterMs) {
      why = `being signed for ${age}`;
    }
    if (why) problems.push({ code: STATUS_EXIT.stageStuck, message: `stuck: ${job.uuid} in ${job.stage}, ${why}` });
  }
  return problems.sort((a, b) => PRECEDENCE.indexOf(a.code) - PRECEDENCE.indexOf(b.code));
}
