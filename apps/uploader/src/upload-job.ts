import { rm } from 'node:fs/promises';
import { dputUploadUrl, giveUp, reportReason, sendReport, type Clock, type JobOutbox, type Logger } from '@spark/service';
import { jobWorkspaceDir, type JobRound, type Manifest, type ReportPayload, type UploadOutcome, type UploadState } from '@spark/protocol';
import type { PutTimeouts } from './put-file.js';
import { NotAsSignedError, openArtifactsDir } from './signed-artifacts.js';
import { uploadFiles } from './upload-files.js';
import { UploadPlanError, uploadOrder } from './upload-order.js';
import type { UploadProgress } from './upload-progress.js';
import type { UploadRecords } from './upload-records.js';

/** The uploader's report queue as it uses it. */
export interface UploaderReports extends JobOutbox {
  /** The highest sequence number of a status excerpt of `round` the queue keeps (0 when none): `lastStatusSeq`. */
  lastStatusSeq(round: JobRound): Promise<number>;
}

/** What uploading a job needs. */
export interface UploadJobDeps {
  /** Job records, upload targets and progress (on a `worker` connection: it waits out Redis restarts). */
  records: UploadRecords;
  /** The uploader's report queue (`REPORT_QUEUES.uploader`). */
  reports: UploaderReports;
  /** When tries start and fail, reports are made, and the deadline passes. */
  clock: Clock;
  /** `<WorkspaceRoot>/workspaces`. */
  workspacesDir: string;
  policy: UploadPolicy;
}

/** The terminal report for a build result, as Lighthouse gets it once the upload is done. */
export function finalReport(manifest: Manifest, at: number): ReportPayload {
  switch (manifest.result) {
    case 'success':
      return { kind: 'success', uuid: manifest.uuid, round: manifest.round, at };
    case 'failure':
      return {
        kind: 'failed',
        uuid: manifest.uuid,
        round: manifest.round,
        at,
        reason: 'the build failed (X-Spark-Result: failure); its log and .dud are uploaded',
      };
    case 'depwait':
      return {
        kind: 'failed',
        uuid: manifest.uuid,
        round: manifest.round,
        at,
        reason: 'the build is waiting for dependencies (X-Spark-Result: depwait); its log and .dud are uploaded',
      };
  }
}

/** How uploads are sent and retried. */
export interface UploadPolicy {
  /** `[uploader] ConnectTimeout` and `IdleTimeout`. */
  timeouts: PutTimeouts;
  /** ms from a round's first try after which a still failing upload is given up (`[uploader] GiveUpAfter`). */
  giveUpAfterMs: number;
  /** ms to wait before the next try when `failedInARow` tries (≥ 1) failed without uploading a file. */
  retryDelayMs: (failedInARow: number) => number;
}

/** What a try of an upload job came to: the job ended (reported to Lighthouse), or it is tried again at `retryAt`. */
export type UploadTry = { ended: UploadOutcome } | { retryAt: number };

/** `2026-11-29 09:30:00 UTC`: times in excerpts and reasons, readable where Lighthouse shows them. */
function utc(ms: number): string {
  return `${new Date(ms).toISOString().slice(0, 19).replace('T', ' ')} UTC`;
}

/** `6 h`, `90 s`, `2 h 30 min`. */
function span(ms: number): string {
  const s = Math.round(ms / 1000);
  if (s < 120) return `${s} s`;
  const min = Math.round(s / 60);
  if (min < 120) return `${min} min`;
  return `${Math.floor(min / 60)} h${min % 60 ? ` ${min % 60} min` : ''}`;
}

/**
 * One try at uploading a signed job's files to its repository's target in
 * dput-ng's order. When every file is in, puts the build's final report on
 * `report` and removes the job's workspace (its log in `WorkspaceRoot/logs`
 * stays). When a try fails it asks to be tried again with backoff and, from
 * the second try in a row that got no file through, says why in a status
 * excerpt to Lighthouse; once the round's deadline
 * (`GiveUpAfter`, counted from its first try) has passed, or at once when the
 * job's own files cannot be uploaded as they are, it reports the round failed
 * with the reason and removes the workspace. Safe to run again after a crash
 * at any point: uploaded files are skipped, the deadline keeps counting, and
 * the final report has a fixed job id. `setState` records what the job is
 * doing, for `spark status`.
 */
export async function uploadJob(
  manifest: Manifest,
  deps: UploadJobDeps,
  logger: Logger,
  setState: (state: UploadState) => Promise<void> = () => Promise.resolve(),
): Promise<UploadTry> {
  const { clock } = deps;
  const progress = deps.records.progress(manifest);
  const workspace = jobWorkspaceDir(deps.workspacesDir, manifest);
  const removeWorkspace = async () => {
    await rm(workspace, { recursive: true, force: true });
    logger.info({ workspace }, 'removed the job workspace');
  };
  const earlier = await progress.reported();
  if (earlier) {
    await removeWorkspace();
    return { ended: earlier };
  }
  const { tries, firstTryAt } = await progress.startTry(clock.now());
  const giveUpAt = firstTryAt + deps.policy.giveUpAfterMs;
  let uploadedThisTry = 0;
  // Lighthouse's job-failed carries no reason: the last excerpt before it says why.
  const giveUpRound = async (reason: string) => {
    await sendUploadStatus(
      deps,
      progress,
      manifest,
      `spark-uploader: gave up uploading this job's results; reporting it failed:\n${reason}\n`,
      logger,
    );
    await giveUp(deps.reports, manifest, 'failed', reason, logger, { at: clock.now() });
    return end({ result: 'gave-up', reason: reportReason(reason), at: clock.now() });
  };
  const end = async (outcome: UploadOutcome) => {
    await progress.markReported(outcome);
    await removeWorkspace();
    return { ended: outcome };
  };
  const latest = await deps.records.read(manifest.uuid);
  if (latest && latest.round !== manifest.round) {
    // Lighthouse handed the job out again: this round's files are not the job's result any more
    // (docs/architecture.md, "Rounds and ids"), and its reports would be dropped.
    logger.warn({ latestRound: latest.round }, 'not uploading: the job was handed out again and this round is over; reporting nothing');
    return end({ result: 'superseded', by: latest.round, at: clock.now() });
  }
  try {
    const target = await deps.records.target(manifest.repo);
    const artifacts = await openArtifactsDir(deps.workspacesDir, manifest);
    try {
      const items = (await uploadOrder(manifest, artifacts)).map((file) => ({
        ...file,
        url: dputUploadUrl(target, manifest.repo, file.name),
        archivePath: `incoming/${manifest.repo}/${file.name}`,
      }));
      const unlisted = manifest.files.map((entry) => entry.name).filter((name) => !items.some((item) => item.name === name));
      if (unlisted.length > 0) {
        logger.warn({ unlisted }, `not uploading ${unlisted.join(', ')}: listed in neither the .changes nor the .dud`);
      }
      logger.info(
        { files: items.length, target: `${target.upload_method}://${target.upload_fqdn}`, repo: manifest.repo, try: tries },
        `uploading ${items.length} files to ${manifest.repo}${tries > 1 ? ` (try ${tries})` : ''}`,
      );
      await uploadFiles(items, artifacts, progress, deps.policy.timeouts, logger, {
        sending: (item, fileNumber) =>
          setState({ phase: 'uploading', file: item.name, fileNumber, files: items.length, tries, firstTryAt, giveUpAt }),
        uploaded: () => (uploadedThisTry += 1),
      });
    } finally {
      await artifacts.close();
    }
  } catch (error) {
    if (error instanceof NotAsSignedError) {
      // Only a builder that changed its workspace after signing gets here: no later try can mend it.
      return giveUpRound(`the job's files are not what the signer signed: ${error.message}. ${await leftAtArchive(manifest, progress)}`);
    }
    if (error instanceof UploadPlanError) {
      // The signed files themselves cannot be uploaded: no later try can change that.
      return giveUpRound(`the uploader cannot upload the job's files: ${error.message}`);
    }
    const problem = (error as Error).message;
    const now = clock.now();
    if (now >= giveUpAt) {
      return giveUpRound(
        `the upload to the archive (repository ${manifest.repo}) still failed after ${tries} tries over ${span(now - firstTryAt)} ` +
          `(GiveUpAfter ${span(deps.policy.giveUpAfterMs)}); last problem: ${problem}`,
      );
    }
    const failedInARow = await progress.failedTry(uploadedThisTry > 0);
    const retryAt = Math.min(now + deps.policy.retryDelayMs(failedInARow), giveUpAt);
    logger.warn({ err: error, try: tries, retryAt }, `upload try ${tries} failed: ${problem}; next try at ${utc(retryAt)}`);
    await setState({ phase: 'retrying', problem, tries, firstTryAt, nextTryAt: retryAt, giveUpAt });
    // One failed try the next one may well mend (a 503, a dropped connection) is not news for
    // Lighthouse, which keeps only the latest excerpt: it would hide the build log's tail.
    if (failedInARow < 2) return { retryAt };
    await sendUploadStatus(
      deps,
      progress,
      manifest,
      `spark-uploader: uploading this job's results to repository ${manifest.repo} is failing (try ${tries}, failing since ${utc(firstTryAt)}):\n` +
        `${problem}\n` +
        `Next try at ${utc(retryAt)}; if the upload still fails at ${utc(giveUpAt)}, the job is reported failed.\n`,
      logger,
    );
    return { retryAt };
  }
  const report = finalReport(manifest, clock.now());
  await sendReport(deps.reports, report);
  logger.info({ report: report.kind }, `upload complete; reported ${report.kind} to Lighthouse`);
  return end({ result: 'uploaded', report: report.kind === 'success' ? 'success' : 'failed' });
}

/**
 * Queues a status excerpt of the round, numbered after every excerpt this
 * uploader queued for it before (in its own report queue), so it is never
 * dropped as a duplicate id. A failure to queue it is logged: the
 * retry goes on regardless.
 */
async function sendUploadStatus(
  deps: UploadJobDeps,
  progress: UploadProgress,
  round: JobRound,
  excerpt: string,
  logger: Logger,
): Promise<void> {
  try {
    const seq = ((await progress.statusSeq()) ?? (await deps.reports.lastStatusSeq(round))) + 1;
    await sendReport(
      deps.reports,
      { kind: 'status', uuid: round.uuid, round: round.round, at: deps.clock.now(), logExcerpt: excerpt },
      seq,
    );
    await progress.setStatusSeq(seq);
  } catch (err) {
    logger.error({ err }, 'cannot queue a status excerpt for Lighthouse');
  }
}

/**
 * What the archive holds of a round given up for a file that was not what was
 * signed, from the progress record, with what to do about it. lkwebupload
 * keeps every PUT, a cut one too, and imports a set only once its control
 * file is in; a file it holds blocks a later upload of the same name (403).
 */
async function leftAtArchive(manifest: Manifest, progress: UploadProgress): Promise<string> {
  const files = await progress.files();
  if (files.size === 0) return 'Nothing of this round was sent to the archive.';
  const where = `incoming/${manifest.repo}/`;
  const names = manifest.files
    .filter(({ name }) => files.has(name))
    .map(({ name }) => (files.get(name) === 'done' ? name : `${name} (possibly partial: its PUT was cut off)`));
  const controls = [manifest.changes, manifest.dud].filter((name) => name !== null && files.get(name) === 'done');
  return (
    `The archive holds in ${where} what this round sent: ${names.join(', ')}; ` +
    (controls.length === 0
      ? 'no .changes or .dud of it was sent, so it imports none of them. '
      : `${controls.join(' and ')} went in whole, so the archive may import that upload. `) +
    `Remove them from ${where} on the archive before the job is built again: the archive refuses a file name it holds.`
  );
}
