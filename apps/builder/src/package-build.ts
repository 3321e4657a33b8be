import { mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { versionWithoutEpoch, type BuildResult, type PackageBuildJob } from '@spark/protocol';
import { BUILD_REFUSED } from '@spark/protocol/constants';
import { readChangesSet } from './changes-files.js';
import { createWarningCollector, WARNING_NEEDLES } from './compiler-warnings.js';
import { debspawnCommand } from './debspawn-command.js';
import { fetchSource, SourceFetchError } from './fetch-source.js';
import { firehoseFileName, firehoseXml } from './firehose.js';
import { stopReason } from './job-stop.js';
import { runLogged } from './run-logged.js';
import type { RunnerContext, RunnerOutcome } from './runner.js';

/** debspawn's line when this host has no image for the suite (spark/runners/debspawn.py): reject the job. */
export const MISSING_IMAGE_PREFIX = 'ERROR: The container image for';
/** apt's line when build dependencies cannot be installed: the build waits for them (depwait). */
export const UNMET_DEPENDENCIES = 'The following packages have unmet dependencies:';

/** debspawn's `--only` for a job: `indep` for `all`, `arch` without `do_indep`, else `binary` (as laniakea-spark's worker does). */
export function debspawnOnly(architecture: string, doIndep: boolean): 'arch' | 'indep' | 'binary' {
  if (architecture === 'all') return 'indep';
  return doIndep ? 'binary' : 'arch';
}

/** The arguments of `debspawn build` for a job whose `.dsc` is at `dsc`, built in a `containerArchitecture` image. */
export function debspawnBuildArgs(job: PackageBuildJob, containerArchitecture: string, dsc: string, resultsDir: string): string[] {
  const args = [
    'build',
    '--no-buildlog',
    `--arch=${containerArchitecture}`,
    `--results-dir=${resultsDir}`,
    `--only=${debspawnOnly(job.architecture, job.data.do_indep)}`,
  ];
  if (job.data.maintainer) args.push(`--maintainer=${job.data.maintainer}`);
  args.push(job.data.suite, dsc);
  return args;
}

/**
 * Runs a package build: fetches and verifies the source, builds it with
 * `debspawn build`, reads the result from debspawn's output and exit code,
 * and writes the Firehose report of the compiler warnings in the log.
 */
export async function runPackageBuild(ctx: RunnerContext<PackageBuildJob>, debspawnVersion: () => Promise<string>): Promise<RunnerOutcome> {
  const { job, log, workspace, signal } = ctx;
  const sourceDir = join(workspace, 'source');
  const resultsDir = join(workspace, 'results');
  await mkdir(sourceDir, { recursive: true });
  await mkdir(resultsDir, { recursive: true });

  let fetched;
  try {
    fetched = await fetchSource(job.data.dsc_url, job.data.sha256sum, sourceDir, log, signal, {
      ...ctx.downloadTimeouts,
      allowFileUrls: ctx.allowFileUrls,
    });
  } catch (error) {
    if (signal.aborted) return stoppedOutcome(stopReason(signal));
    if (error instanceof SourceFetchError) return { type: 'rejected', reason: `source refused: ${error.message}` };
    throw error;
  }

  // Filled in by the line listener while debspawn runs.
  const seen: { missingImage: string | null; unmetDependencies: boolean; refusedOutput: string | null } = {
    missingImage: null,
    unmetDependencies: false,
    refusedOutput: null,
  };
  const warnings = createWarningCollector();
  log.onLine([MISSING_IMAGE_PREFIX, UNMET_DEPENDENCIES, BUILD_REFUSED], (line) => {
    if (line.startsWith(MISSING_IMAGE_PREFIX)) seen.missingImage ??= line;
    if (line.includes(UNMET_DEPENDENCIES)) seen.unmetDependencies = true;
    if (line.startsWith(BUILD_REFUSED)) seen.refusedOutput ??= line.slice(BUILD_REFUSED.length);
  });
  // Once the list is full no line can change it: a build flooding warnings stops paying for finding them and making
  // them plain (40 % of the relay's CPU in its bench, docs/benchmarks.md).
  const stopWarnings = log.onLine(WARNING_NEEDLES, (line) => {
    warnings.line(line);
    if (warnings.full) stopWarnings();
  });

  const started = Date.now();
  const run = await runLogged(
    debspawnCommand(ctx.debspawn, debspawnBuildArgs(job, ctx.containerArchitecture, fetched.dsc, resultsDir)),
    log,
    {
      cwd: workspace,
      idleOutputTimeoutMs: ctx.idleOutputTimeoutMs,
      killGraceMs: ctx.killGraceMs,
      signal,
    },
  );
  const wallClockSeconds = (Date.now() - started) / 1000;
  if (run.stopped?.rejectsJob) return { type: 'rejected', reason: run.stopped.message };
  if (seen.missingImage !== null && run.exitCode !== 0) {
    return { type: 'rejected', reason: `this worker is missing an environment: ${seen.missingImage}`, needsOperator: true };
  }

  let result: BuildResult = 'success';
  let reason: string | null = null;
  let changes = null;
  if (run.stopped) {
    result = 'failure';
    reason = `build stopped: ${run.stopped.message}`;
  } else if (run.exitCode !== 0 && seen.refusedOutput !== null) {
    // The build put a link (or a device, FIFO, socket) where its results go: the helper handed nothing back.
    result = 'failure';
    reason = seen.refusedOutput;
  } else if (run.exitCode !== 0) {
    result = seen.unmetDependencies ? 'depwait' : 'failure';
    reason = seen.unmetDependencies ? 'build dependencies cannot be installed' : `debspawn exited with code ${run.exitCode}`;
  } else {
    try {
      changes = await readChangesSet(resultsDir, fetched.source, versionWithoutEpoch(fetched.version));
    } catch (error) {
      return { type: 'rejected', reason: `debspawn succeeded but its results are unusable: ${(error as Error).message}` };
    }
    if (!changes) {
      return {
        type: 'rejected',
        reason: `debspawn succeeded but left no ${fetched.source}_${versionWithoutEpoch(fetched.version)}_*.changes`,
      };
    }
  }

  const firehose = join(workspace, firehoseFileName(job.data.package_name, job.data.package_version, job.architecture, job.uuid));
  await writeFile(
    firehose,
    firehoseXml({
      generatorVersion: await debspawnVersion(),
      source: job.data.package_name,
      version: job.data.package_version,
      wallClockSeconds,
      warnings: warnings.warnings,
    }),
  );
  log.note(`${warnings.warnings.length} compiler warning(s) recorded in ${firehose}`);
  return { type: 'built', result, reason, changes, files: [firehose], dsc: fetched.dsc };
}

function stoppedOutcome(stop: ReturnType<typeof stopReason>): RunnerOutcome {
  return stop.rejectsJob
    ? { type: 'rejected', reason: stop.message }
    : { type: 'built', result: 'failure', reason: `build stopped: ${stop.message}`, changes: null, files: [] };
}
