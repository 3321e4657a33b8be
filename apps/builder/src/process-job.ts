import { randomUUID } from 'node:crypto';
import { constants } from 'node:fs';
import { copyFile, mkdir, rm } from 'node:fs/promises';
import { basename, join } from 'node:path';
import {
  isSafeFileName,
  jobArtifactsDir,
  jobLogFile,
  jobSourceDir,
  jobWorkspaceDir,
  manifestSchema,
  readJobReply,
  roundSchema,
  stageJobId,
  type JobRound,
  type Job,
  type JobKind,
  type Manifest,
} from '@spark/protocol';
import { writeDud } from './dud.js';
import { moveArtifact } from './place-artifact.js';
import { digestFile, giveUp, sendReport, type Clock, type FileDigests, type JobOutbox, type Logger } from '@spark/service';
import { openJobLog, type JobLog } from './job-log.js';
import { JobStop, stopReason } from './job-stop.js';
import type { RunnerContext, RunnerOutcome } from './runner.js';

/** Runs one kind of job. */
export type Runner = (ctx: RunnerContext) => Promise<RunnerOutcome>;

/** What processing a `build` job needs. */
export interface JobDeps {
  workspacesDir: string;
  logsDir: string;
  /** Architectures built here; `all` is built on any of them. */
  architectures: readonly string[];
  /** The runner of each job kind this builder takes. */
  runners: Partial<Record<JobKind, Runner>>;
  /** The builder's report queue. */
  reportQueue: JobOutbox;
  /** The `sign` queue, where a built round's artifacts are handed on. */
  signQueue: JobOutbox;
  logger: Logger;
  /** The time every report says it was made at. */
  clock: Clock;
  statusIntervalMs: number;
  maxBuildTimeMs: number;
  /** Bytes of build output a job's log may hold (`[builder] MaxLogSize`). */
  maxLogBytes: number;
  /** Everything of RunnerContext that is not per job. */
  runnerSettings: Pick<RunnerContext, 'debspawn' | 'idleOutputTimeoutMs' | 'killGraceMs' | 'downloadTimeouts' | 'allowFileUrls'>;
}

/** Status excerpts one attempt at a build job may number: each attempt numbers in a range of its own. */
const STATUS_SEQS_PER_ATTEMPT = 1_000_000;

/**
 * Where the status excerpts of a job's `attemptsStarted`-th attempt (BullMQ's
 * count, 1 for the first) count on from: past every number an earlier attempt
 * can have used, within the nine digits a report id allows (job-ids.ts).
 */
export function statusSeqBase(attemptsStarted: number): number {
  return Math.min(Math.max(attemptsStarted - 1, 0), 998) * STATUS_SEQS_PER_ATTEMPT;
}

/**
 * This attempt at a `build` job, as the queue knows it. A job BullMQ hands
 * out again (its builder was killed, or lost its lock) is a new attempt whose
 * reports must not reuse the ids of the earlier ones' — an earlier attempt
 * cut off from Redis may still be queueing excerpts when the next one starts —
 * and must come after them.
 */
export interface BuildAttempt {
  /** The status sequence number this attempt's excerpts count on from ({@link statusSeqBase}). */
  statusSeqBase: number;
  /** False once this builder no longer holds the job's lock: another builder owns the job. */
  holdsLock(): Promise<boolean>;
  /** Aborted when renewing the job's lock failed: the build stops at once and reports nothing. */
  lockLost: AbortSignal;
}

const FIRST_ATTEMPT: BuildAttempt = {
  statusSeqBase: 0,
  holdsLock: () => Promise.resolve(true),
  lockLost: new AbortController().signal,
};

/** How a `build` job ended, as the BullMQ job's return value. */
export type JobSummary =
  | { outcome: 'dropped'; reason: string }
  | { outcome: 'rejected'; reason: string }
  | { outcome: 'built'; result: Manifest['result']; files: number };

/**
 * Processes one `build` job: checks it again, prepares the workspace and log,
 * reports `accepted`, runs it, and hands its artifacts and `.dud` to the
 * `sign` queue — or reports `rejected` with the reason. Never throws for a
 * problem of the job; `running` maps each running job's uuid to its stopper.
 */
export async function processBuildJob(
  data: unknown,
  deps: JobDeps,
  running: Map<string, AbortController>,
  attempt: BuildAttempt = FIRST_ATTEMPT,
): Promise<JobSummary> {
  const fields = typeof data === 'object' && data !== null ? (data as Record<string, unknown>) : {};
  const reply = readJobReply(fields['job']);
  const roundField = roundSchema.safeParse(fields['round']);
  const uuidOf = reply.type === 'job' ? reply.job.uuid : reply.type === 'invalid' ? reply.uuid : null;
  if (uuidOf === null || !roundField.success) {
    const reason =
      reply.type === 'invalid' ? reply.reason : roundField.success ? 'build job carries no Lighthouse job' : 'build job names no round';
    deps.logger.error({ reason }, 'dropping a build job without a usable uuid and round: it cannot be reported to Lighthouse');
    return { outcome: 'dropped', reason };
  }
  const round: JobRound = { uuid: uuidOf.toLowerCase(), round: roundField.data };
  const { uuid } = round;
  const logger = deps.logger.child({ jobId: uuid, round: round.round });
  if (reply.type !== 'job') return reject(deps, round, reply.type === 'invalid' ? reply.reason : 'no job', logger);
  const job = reply.job;
  const runner = deps.runners[job.kind];
  if (!runner) return reject(deps, round, `this builder does not run ${job.kind} jobs`, logger);
  if (job.architecture !== 'all' && !deps.architectures.includes(job.architecture)) {
    return reject(deps, round, `this builder builds ${deps.architectures.join(', ')}, not ${job.architecture}`, logger);
  }
  const earlier = running.get(uuid);
  const earlierRound = earlier && runRound.get(earlier);
  if (earlier && earlierRound !== undefined && Number(earlierRound) < Number(round.round) && !earlier.signal.aborted) {
    // Lighthouse handed the job out again: the job is the new round's, and the earlier round's reports would be dropped.
    earlier.abort(new JobStop('superseded', `Lighthouse handed the job out again (round ${round.round})`));
  }
  if (earlier && !(earlier.signal.aborted && stopReason(earlier.signal).reportsNothing)) {
    logger.warn('job is already running here; ignoring the duplicate');
    return { outcome: 'dropped', reason: 'already running' };
  }

  const stopper = new AbortController();
  running.set(uuid, stopper);
  runRound.set(stopper, round.round);
  let ended = () => {};
  runEnded.set(stopper, new Promise<void>((resolve) => (ended = resolve)));
  if (earlier) {
    // This builder's own earlier run lost the lock or was superseded and is stopping (within its kill grace).
    logger.info({ reason: stopReason(earlier.signal).message }, 'waiting for the earlier run of this job to stop');
    await runEnded.get(earlier);
  }
  const onLockLost = () =>
    stopper.abort(new JobStop('lock-lost', 'the job lock could not be renewed: another builder may run the job now'));
  if (attempt.lockLost.aborted) onLockLost();
  attempt.lockLost.addEventListener('abort', onLockLost, { once: true });
  const timeLimit = setTimeout(
    () => stopper.abort(new JobStop('time-limit', `job exceeded its time limit of ${Math.round(deps.maxBuildTimeMs / 1000)} s`)),
    deps.maxBuildTimeMs,
  );
  try {
    return await runJob(job, round, deps, stopper.signal, logger, attempt);
  } finally {
    clearTimeout(timeLimit);
    attempt.lockLost.removeEventListener('abort', onLockLost);
    if (running.get(uuid) === stopper) running.delete(uuid);
    ended();
  }
}

/** Settles when the run behind a stopper (a value of `running`) has ended. */
const runEnded = new WeakMap<AbortController, Promise<void>>();
/** The round the run behind a stopper builds. */
const runRound = new WeakMap<AbortController, string>();

async function runJob(
  job: Job,
  round: JobRound,
  deps: JobDeps,
  signal: AbortSignal,
  logger: Logger,
  attempt: BuildAttempt,
): Promise<JobSummary> {
  const { uuid } = round;
  const workspace = jobWorkspaceDir(deps.workspacesDir, round);
  const artifacts = jobArtifactsDir(deps.workspacesDir, round);
  // This run's own directory: a run that lost the job to another builder may still be
  // stopping while the new one starts, and must not write where the new one builds.
  const runDir = join(workspace, `run-${randomUUID()}`);
  const reportsNothing = () => signal.aborted && stopReason(signal).reportsNothing;
  let log: JobLog;
  try {
    // A job retried after a crash starts from a clean workspace.
    await rm(workspace, { recursive: true, force: true });
    await mkdir(artifacts, { recursive: true });
    await mkdir(runDir);
    await mkdir(deps.logsDir, { recursive: true });
    log = await openJobLog(jobLogFile(deps.logsDir, round), { maxOutputBytes: deps.maxLogBytes });
  } catch (error) {
    await rm(workspace, { recursive: true, force: true }).catch(() => undefined);
    return reject(deps, round, `cannot prepare the workspace: ${(error as Error).message}`, logger);
  }
  await sendReport(deps.reportQueue, { kind: 'accepted', ...round, at: deps.clock.now() });
  logger.info({ kind: job.kind, architecture: job.architecture }, 'job accepted');
  log.note(`job ${uuid}: ${job.kind} for ${job.architecture}, repository ${job.repo}`);

  // Numbered after the earlier attempts' (a reused number would be dropped as a duplicate).
  let statusSeq = attempt.statusSeqBase;
  let statusChain = Promise.resolve();
  const sendStatus = () => {
    const excerpt = log.takeExcerpt();
    if (excerpt === null || reportsNothing()) return statusChain;
    const seq = ++statusSeq;
    statusChain = statusChain
      .then(() => sendReport(deps.reportQueue, { kind: 'status', ...round, at: deps.clock.now(), logExcerpt: excerpt }, seq))
      .catch((err: unknown) => logger.error({ err }, 'cannot queue a log excerpt for Lighthouse'));
    return statusChain;
  };
  const statusTimer = setInterval(() => void sendStatus(), deps.statusIntervalMs);

  let outcome: RunnerOutcome;
  try {
    const run = deps.runners[job.kind] as Runner;
    const containerArchitecture = job.architecture === 'all' ? (deps.architectures[0] ?? 'all') : job.architecture;
    outcome = await run({ job, workspace: runDir, log, signal, containerArchitecture, ...deps.runnerSettings });
  } catch (error) {
    logger.error({ err: error }, 'runner failed');
    outcome = { type: 'rejected', reason: `the builder failed running the job: ${(error as Error).message}` };
  }
  clearInterval(statusTimer);
  if (signal.aborted && stopReason(signal).kind === 'superseded') {
    const { message } = stopReason(signal);
    log.note(`this round is over: ${message}; nothing is reported from here`);
    await log.close().catch(() => undefined);
    await rm(workspace, { recursive: true, force: true }).catch(() => undefined);
    logger.warn({ reason: message }, 'round superseded by a newer hand-out of the job; reporting nothing');
    return { outcome: 'dropped', reason: message };
  }
  // Renewal failed or not, only the lock says whose job it is: a job still ours is reported (a stopped
  // run is rejected back), never dropped — nobody else would report it. A Redis error is no proof.
  if (!(await attempt.holdsLock().catch(() => true))) {
    // Another builder owns the job now: its workspace and its reports are that builder's.
    log.note('this builder lost the job (its lock expired, another builder may run it): nothing is reported from here');
    await log.close().catch(() => undefined);
    await rm(runDir, { recursive: true, force: true }).catch(() => undefined);
    logger.warn('lost the job to another builder (its BullMQ lock expired); reporting nothing');
    return { outcome: 'dropped', reason: 'lost the job lock to another builder' };
  }
  if (outcome.type === 'rejected') log.note(`job rejected back to Lighthouse: ${outcome.reason}`);
  else log.note(`job finished: ${outcome.result}${outcome.reason ? ` (${outcome.reason})` : ''}`);
  await log.close().catch((err: unknown) => logger.error({ err }, 'cannot finish writing the job log'));
  await sendStatus();

  if (outcome.type === 'rejected') {
    await rm(workspace, { recursive: true, force: true }).catch(() => undefined);
    return reject(deps, round, outcome.reason, logger, outcome.needsOperator);
  }
  try {
    const manifest = await collectArtifacts(job, round, outcome, artifacts, log.path, logger);
    if (outcome.dsc !== undefined) await keepDsc(outcome.dsc, jobSourceDir(deps.workspacesDir, round));
    await deps.signQueue.add('sign', { manifest }, { jobId: stageJobId(round, 'sign') });
    logger.info({ result: manifest.result, files: manifest.files.length }, 'artifacts handed to the sign queue');
    // Sources and build trees are not needed past this point; the artifacts stay for the signer and the uploader.
    await rm(runDir, { recursive: true, force: true }).catch(() => undefined);
    return { outcome: 'built', result: manifest.result, files: manifest.files.length };
  } catch (error) {
    await rm(workspace, { recursive: true, force: true }).catch(() => undefined);
    return reject(deps, round, `cannot hand over the job's artifacts: ${(error as Error).message}`, logger);
  }
}

/**
 * Copies the job's verified `.dsc` out of the run's directory (removed at the
 * hand-off) into the workspace's source dir, under its own name: the signer
 * reads the source's binary packages from it (see `JOB_SOURCE_DIR`).
 */
async function keepDsc(dsc: string, sourceDir: string): Promise<void> {
  await mkdir(sourceDir, { recursive: true });
  await copyFile(dsc, join(sourceDir, basename(dsc)));
}

/**
 * Moves the `.changes` and its files and the runner's other files into the
 * flat artifacts dir (copies only when they must be, logged), copies the log
 * there (a reflink where the filesystem has them: the kept log and the
 * artifact must not share an inode, the signer signs only files that exist
 * once), writes the `.dud` over everything but the `.changes` set, and
 * returns the manifest of all of it. Each file is hashed once: the `.changes`
 * set's digests come from its check, the others' are shared by the `.dud`
 * and the manifest.
 */
async function collectArtifacts(
  job: Job,
  { uuid, round }: JobRound,
  outcome: Extract<RunnerOutcome, { type: 'built' }>,
  artifacts: string,
  logPath: string,
  logger: Logger,
): Promise<Manifest> {
  const names: string[] = [];
  const digests = new Map<string, FileDigests>();
  const place = async (from: string, name: string, known?: FileDigests) => {
    if (!isSafeFileName(name)) throw new Error(`artifact ${JSON.stringify(name)} is not a plain file name`);
    if (names.includes(name)) throw new Error(`two artifacts are named ${name}`);
    const to = join(artifacts, name);
    let copied: string | null = null;
    if (from === logPath) await copyFile(from, to, constants.COPYFILE_FICLONE);
    else if (from !== to) copied = await moveArtifact(from, to);
    if (copied !== null) logger.warn({ artifact: name }, `copied ${from} into the artifacts instead of moving it: ${copied}`);
    names.push(name);
    // A copy is read again: the digests must be of the file that is handed on.
    const read = known && copied === null ? known : await digestFile(to);
    if (known && (read.size !== known.size || read.sha256 !== known.sha256)) throw new Error(`${name} changed while it was moved`);
    digests.set(name, read);
  };
  if (outcome.changes) {
    const { dir, name, files, digests: checked } = outcome.changes;
    for (const file of [...files, name]) await place(join(dir, file), file, checked.get(file));
  }
  const dudFiles: string[] = [];
  for (const [from, name] of [[logPath, `${uuid}.log`], ...outcome.files.map((file) => [file, basename(file)])] as [string, string][]) {
    await place(from, name);
    dudFiles.push(name);
  }
  const dud = await writeDud(artifacts, { uuid, architecture: job.architecture, result: outcome.result, files: dudFiles, digests });
  names.push(dud.name);
  digests.set(dud.name, dud.digests);
  const files = names.map((name) => {
    const { size, sha256 } = digests.get(name) as FileDigests;
    return { name, size, sha256 };
  });
  return manifestSchema.parse({
    uuid,
    round,
    repo: job.repo,
    result: outcome.result,
    files,
    changes: outcome.changes?.name ?? null,
    dud: dud.name,
  });
}

async function reject(deps: JobDeps, round: JobRound, reason: string, logger: Logger, needsOperator = false): Promise<JobSummary> {
  await giveUp(deps.reportQueue, round, 'rejected', reason, logger, { at: deps.clock.now(), ...(needsOperator ? { needsOperator } : {}) });
  return { outcome: 'rejected', reason };
}
