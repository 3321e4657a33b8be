import { join } from 'node:path';
import { z } from 'zod';
import { UUID } from './debian-names.js';

/*
 * Every id a job has on this host, built and parsed here and nowhere else
 * (docs/architecture.md, "Rounds and ids").
 *
 * Lighthouse names a job by its uuid, and hands the same uuid out again after
 * it finished (`lk-admin job retry`, a depwait put back to WAITING, a stalled
 * job rescheduled, a job this worker rejected). Each hand-out to this worker is
 * a *round* of the job, named by the time the connector received it (ms since
 * the epoch, decimal): taken from the hand-out itself, so no restart can reset
 * it, and later rounds sort after earlier ones. Every queue job, report, workspace
 * and log of a round carries `<uuid>.<round>`, so rounds never share an id,
 * and BullMQ never drops a later round's job as a duplicate of an earlier one.
 */

/** A round: decimal digits, the hand-out time in ms since the epoch. */
export const ROUND = /^[0-9]{1,16}$/;

/** Schema of a round. */
export const roundSchema = z.string().regex(ROUND, 'must be the decimal hand-out time of the round');

/** One hand-out of a Lighthouse job to this worker. */
export interface JobRound {
  /** The Lighthouse job uuid, lowercase. */
  readonly uuid: string;
  /** The round: when the connector received this hand-out, ms since the epoch, decimal. */
  readonly round: string;
}

/** The stages that hand a round on; their queue jobs have fixed ids per round. */
export type Stage = 'build' | 'sign' | 'upload';

/** The report ids of a round: one `accepted`, numbered `status` excerpts, one terminal report. */
export type ReportSlot = { kind: 'accepted' } | { kind: 'status'; seq: number } | { kind: 'final' };

function checked(round: JobRound): JobRound {
  if (!UUID.test(round.uuid)) throw new Error(`refusing job uuid ${JSON.stringify(round.uuid)}: not a UUID`);
  if (!ROUND.test(round.round)) throw new Error(`refusing round ${JSON.stringify(round.round)} of job ${round.uuid}: not a hand-out time`);
  return { uuid: round.uuid.toLowerCase(), round: round.round };
}

/**
 * The round of a hand-out received at `at` (ms): its time, or one more than
 * `previous` when the clock has not moved past an earlier round of the same job.
 */
export function newRound(uuid: string, at: number, previous?: string | null): JobRound {
  const after = previous && ROUND.test(previous) ? Number(previous) + 1 : 0;
  return checked({ uuid, round: String(Math.max(Math.trunc(at), after)) });
}

/** `<uuid>.<round>`: names the round everywhere on this host (build job id, workspace, log). */
export function roundKey(round: JobRound): string {
  const { uuid, round: r } = checked(round);
  return `${uuid}.${r}`;
}

/**
 * The BullMQ job id of a round in a stage's queue: `<uuid>.<round>` in `build`,
 * `<uuid>.<round>.sign`, `<uuid>.<round>.upload`. Fixed per round, so a stage
 * retried after a crash adds the next stage's job once. Laniakea's design writes
 * `<uuid>:sign`; BullMQ 5 refuses `:` in custom job ids, so we use `.`.
 */
export function stageJobId(round: JobRound, stage: Stage): string {
  return stage === 'build' ? roundKey(round) : `${roundKey(round)}.${stage}`;
}

/** The BullMQ job id of a report: `<uuid>.<round>.accepted`, `.status.<seq>` (seq ≥ 1), `.final`. */
export function reportJobId(round: JobRound, slot: ReportSlot): string {
  switch (slot.kind) {
    case 'accepted':
      return `${roundKey(round)}.accepted`;
    case 'status':
      if (!Number.isInteger(slot.seq) || slot.seq < 1)
        throw new Error(`status excerpt sequence must be a positive integer, got ${slot.seq}`);
      return `${roundKey(round)}.status.${slot.seq}`;
    case 'final':
      return `${roundKey(round)}.final`;
  }
}

/** What a queue job id names. */
export type ParsedJobId = JobRound & ({ type: 'stage'; stage: Stage } | { type: 'report'; slot: ReportSlot });

const JOB_ID =
  /^([0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12})\.([0-9]{1,16})(?:\.(sign|upload|accepted|final|status\.([1-9][0-9]{0,8})))?$/;

/** Reads any id built by {@link stageJobId} or {@link reportJobId}; null for anything else. */
export function parseJobId(id: string | undefined | null): ParsedJobId | null {
  const match = JOB_ID.exec(id ?? '');
  if (!match) return null;
  const [, uuid = '', round = '', tail, seq] = match;
  if (tail === undefined) return { uuid, round, type: 'stage', stage: 'build' };
  if (tail === 'sign' || tail === 'upload') return { uuid, round, type: 'stage', stage: tail };
  if (tail === 'accepted' || tail === 'final') return { uuid, round, type: 'report', slot: { kind: tail } };
  return { uuid, round, type: 'report', slot: { kind: 'status', seq: Number(seq) } };
}

/**
 * `<workspacesDir>/<uuid>.<round>`: everything the round downloads and builds.
 * Removed by the stage that ends the round. One directory per round, so a
 * round never sees files of an earlier one.
 */
export function jobWorkspaceDir(workspacesDir: string, round: JobRound): string {
  return join(workspacesDir, roundKey(round));
}

/** `<workspacesDir>/<uuid>.<round>/artifacts`: the files to sign and upload, flat; every manifest entry names one. */
export function jobArtifactsDir(workspacesDir: string, round: JobRound): string {
  return join(jobWorkspaceDir(workspacesDir, round), 'artifacts');
}

/**
 * Directory of a round's workspace where the builder keeps the job's `.dsc` as
 * it fetched and verified it (`<workspace>/source/<name>.dsc`): the signer
 * reads the source's binary packages from it, once its SHA-256 matches the job
 * record's. Nothing in it is signed or uploaded.
 */
export const JOB_SOURCE_DIR = 'source';

/** `<workspacesDir>/<uuid>.<round>/source`, see {@link JOB_SOURCE_DIR}. */
export function jobSourceDir(workspacesDir: string, round: JobRound): string {
  return join(jobWorkspaceDir(workspacesDir, round), JOB_SOURCE_DIR);
}

/** `<logsDir>/<uuid>.<round>.log`: the round's full build log, kept after the workspace is removed. */
export function jobLogFile(logsDir: string, round: JobRound): string {
  return join(logsDir, `${roundKey(round)}.log`);
}
