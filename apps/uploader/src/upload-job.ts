import { lstat, rm } from 'node:fs/promises';
import { join } from 'node:path';
import type { Queue } from 'bullmq';
import type { Redis } from 'ioredis';
import { sendReport, type Logger } from '@spark/service';
import { jobArtifactsDir, jobWorkspaceDir, type Manifest, type ReportPayload } from '@spark/protocol';
import { uploadFiles, type UploadPolicy } from './upload-files.js';
import { UploadPlanError, uploadOrder } from './upload-order.js';
import { uploadProgress } from './upload-progress.js';
import { lookUpTarget } from './upload-target.js';
import { dputUploadUrl } from './upload-url.js';

/** What uploading a job needs. */
export interface UploadJobDeps {
  /** Redis for progress records and the upload targets (a `worker` connection: it waits out Redis restarts). */
  redis: Redis;
  /** BullMQ key prefix (`QueuePrefix`). */
  prefix: string;
  /** The `report` queue. */
  reports: Queue;
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

/**
 * Uploads a signed job's files to its repository's target in dput-ng's order,
 * puts the final report on `report`, then removes the job's workspace (its
 * log in `WorkspaceRoot/logs` stays). Safe to run again after a crash at any
 * point: uploaded files are skipped and the report has a fixed job id.
 * Throws on failure with the workspace left in place for `spark retry-upload`.
 */
export async function uploadJob(manifest: Manifest, deps: UploadJobDeps, logger: Logger): Promise<void> {
  const progress = uploadProgress(deps.redis, deps.prefix, manifest);
  const workspace = jobWorkspaceDir(deps.workspacesDir, manifest);
  if (!(await progress.isReported())) {
    const target = await lookUpTarget(deps.redis, deps.prefix, manifest.repo);
    const dir = jobArtifactsDir(deps.workspacesDir, manifest);
    await checkArtifacts(manifest, dir);
    const sizes = new Map(manifest.files.map((entry) => [entry.name, entry.size]));
    const items = (await uploadOrder(manifest, dir)).map((name) => ({
      name,
      path: join(dir, name),
      size: sizes.get(name) ?? 0,
      url: dputUploadUrl(target, manifest.repo, name),
    }));
    const unlisted = manifest.files.map((entry) => entry.name).filter((name) => !items.some((item) => item.name === name));
    if (unlisted.length > 0) {
      logger.warn({ unlisted }, `not uploading ${unlisted.join(', ')}: listed in neither the .changes nor the .dud`);
    }
    logger.info(
      { files: items.length, target: `${target.upload_method}://${target.upload_fqdn}`, repo: manifest.repo },
      `uploading ${items.length} files to ${manifest.repo}`,
    );
    await uploadFiles(items, progress, deps.policy, logger);
    const report = finalReport(manifest, Date.now());
    await sendReport(deps.reports, report);
    await progress.markReported();
    logger.info({ report: report.kind }, `upload complete; reported ${report.kind} to Lighthouse`);
  }
  await rm(workspace, { recursive: true, force: true });
  logger.info({ workspace }, 'removed the job workspace');
}

/** Every manifest file must be a regular file (not a link out of the dir) of the manifest's size. */
async function checkArtifacts(manifest: Manifest, dir: string): Promise<void> {
  for (const entry of manifest.files) {
    const path = join(dir, entry.name);
    let stats;
    try {
      stats = await lstat(path);
    } catch (error) {
      throw new UploadPlanError(`artifact ${entry.name} is missing from ${dir}: ${(error as NodeJS.ErrnoException).code ?? String(error)}`);
    }
    if (!stats.isFile()) {
      throw new UploadPlanError(`artifact ${entry.name} in ${dir} is not a regular file`);
    }
    if (stats.size !== entry.size) {
      throw new UploadPlanError(`artifact ${entry.name} is ${stats.size} bytes, the signed manifest says ${entry.size}`);
    }
  }
}
