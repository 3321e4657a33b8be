import { readFileSync } from 'node:fs';
import { access, lstat, mkdir, readFile, readdir, stat, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { parse as parseToml } from 'smol-toml';
import type { OsImageBuildJob } from '@spark/protocol';
import { BUILD_REFUSED } from '@spark/protocol/constants';
import type { JobLog } from './job-log.js';
import { debspawnCommand } from './debspawn-command.js';
import { stopReason } from './job-stop.js';
import { runLogged, type RunOutcome } from './run-logged.js';
import type { RunnerContext, RunnerOutcome } from './runner.js';

/** debspawn's host-wide settings. */
export const DEBSPAWN_GLOBAL_CONFIG = '/etc/debspawn/global.toml';

/**
 * `SPARK_ID` exported by every command file, as spark exports `<appname>-<version>`
 * (spark/utils/workspace.py): `spark-ts-<version of this package>`.
 */
export const SPARK_ID = `spark-ts-${packageVersion()}`;

/** This package's version; `src/` and `dist/` sit at the same depth below package.json. */
function packageVersion(): string {
  try {
    const { version } = JSON.parse(readFileSync(new URL('../package.json', import.meta.url), 'utf8')) as { version?: unknown };
    return typeof version === 'string' ? version : 'unknown';
  } catch {
    return 'unknown';
  }
}

/**
 * Whether debspawn lets containers have kvm (spark asks for it on every image
 * build; debspawn exits 9 when not allowed): `AllowUnsafePermissions = true`
 * in debspawn's TOML config at `file`. A missing file means no; an unreadable
 * one is said in the log.
 */
export async function unsafePermissionsAllowed(log: JobLog, file: string = DEBSPAWN_GLOBAL_CONFIG): Promise<boolean> {
  let text: string;
  try {
    text = await readFile(file, 'utf8');
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== 'ENOENT') log.note(`cannot read ${file}: ${(error as Error).message}`);
    return false;
  }
  try {
    return parseToml(text)['AllowUnsafePermissions'] === true;
  } catch (error) {
    log.note(`cannot parse ${file} as TOML: ${(error as Error).message.split('\n')[0] ?? ''}`);
    return false;
  }
}

/** A command file as spark writes one (spark/utils/workspace.py make_commandfile): `set -e`, `SPARK_ID`, then `set -x` so the log shows each command. */
export function commandFile(commands: readonly string[]): string {
  return ['#!/bin/sh', 'set -e', `export SPARK_ID=${shellQuote(SPARK_ID)}`, 'set -x', '', ...commands, ''].join('\n');
}

/** Single-quotes a value for sh. */
function shellQuote(value: string): string {
  return `'${value.replace(/'/g, `'\\''`)}'`;
}

/** The script run in the container: spark's `IB_*` environment, then the recipe's `build.sh` (spark/runners/image_build.py). */
export function imageBuildScript(job: OsImageBuildJob): string {
  return commandFile([
    'export DEBIAN_FRONTEND=noninteractive',
    `export IB_SUITE=${shellQuote(job.data.suite)}`,
    `export IB_ENVIRONMENT=${shellQuote(job.data.environment)}`,
    `export IB_IMAGE_STYLE=${shellQuote(job.data.style ?? '')}`,
    `export IB_TARGET_ARCH=${shellQuote(job.data.architecture)}`,
    // Minimal images lack systemd; a recipe that needs a machine id gets one where possible.
    'if command -v systemd-machine-id-setup >/dev/null; then systemd-machine-id-setup; fi',
    'cd /srv/build',
    'exec ./build.sh',
  ]);
}

/**
 * Runs an OS image build as spark does: clones the recipe (`git clone
 * --depth=1`), runs its `prepare.sh` (cached per format, environment and
 * style) and `build.sh` in `debspawn run`, and collects what the recipe left
 * in `/srv/artifacts`.
 */
export async function runImageBuild(
  ctx: RunnerContext<OsImageBuildJob>,
  options: { debspawnGlobalConfig?: string } = {},
): Promise<RunnerOutcome> {
  const { job, log, workspace, signal } = ctx;
  const recipe = join(workspace, 'ib');
  const output = join(workspace, 'image');
  await mkdir(output, { recursive: true });
  const limits = { idleOutputTimeoutMs: ctx.idleOutputTimeoutMs, killGraceMs: ctx.killGraceMs, signal };

  const clone = await runLogged(
    { file: 'git', args: ['clone', '--depth=1', '--', job.data.git_url, recipe], env: { GIT_TERMINAL_PROMPT: '0' } },
    log,
    { ...limits, cwd: workspace },
  );
  if (clone.stopped) return ended(clone, signal, `cannot clone the recipe ${job.data.git_url}`);
  // Most often the network or the git server: another try, here or on another worker, may well work (as spark).
  if (clone.exitCode !== 0)
    return { type: 'rejected', reason: `cannot clone the recipe ${job.data.git_url} (git exited with code ${clone.exitCode})` };
  // The recipe's commit, so the log says what was built.
  const commit = await runLogged({ file: 'git', args: ['log', '--pretty=oneline', '-1'] }, log, { ...limits, cwd: recipe });
  if (commit.stopped) return ended(commit, signal, 'cannot read the recipe commit');
  if (!(await isFile(join(recipe, 'build.sh')))) {
    return { type: 'built', result: 'failure', reason: 'the recipe has no build.sh', changes: null, files: [] };
  }

  const script = join(workspace, 'build-command.sh');
  await writeFile(script, imageBuildScript(job), { mode: 0o755 });
  const args = ['run', '--external-command', `--arch=${ctx.containerArchitecture}`, '--artifacts-out', output, '--build-dir', recipe];
  if (await unsafePermissionsAllowed(log, options.debspawnGlobalConfig)) args.push('--allow=kvm,read-kmods');
  else
    log.note(`running without kvm: debspawn refuses extra permissions unless AllowUnsafePermissions is set in ${DEBSPAWN_GLOBAL_CONFIG}`);
  if (await isFile(join(recipe, 'prepare.sh'))) {
    const init = join(workspace, 'prepare-command.sh');
    await writeFile(init, commandFile(['export DEBIAN_FRONTEND=noninteractive', 'cd /srv/build', 'exec ./prepare.sh']), { mode: 0o755 });
    const cacheKey = `${job.data.suite}-mkimage-${job.data.image_format}-${job.data.environment || 'any'}-${job.data.style || 'any'}`;
    args.push('--cachekey', cacheKey, '--init-command', init);
  }
  args.push(
    `--header=${job.data.distribution} ${job.data.image_format.toUpperCase()} image build for ${job.data.suite} ${job.data.environment} [${job.data.style ?? ''}]`,
  );
  args.push(job.data.suite, script);

  let refusedOutput: string | null = null;
  log.onLine([BUILD_REFUSED], (line) => {
    if (line.startsWith(BUILD_REFUSED)) refusedOutput ??= line.slice(BUILD_REFUSED.length);
  });
  const run = await runLogged(debspawnCommand(ctx.debspawn, args), log, { ...limits, cwd: workspace });
  if (run.stopped || run.exitCode !== 0) return ended(run, signal, refusedOutput ?? `the image build exited with code ${run.exitCode}`);

  const files: string[] = [];
  for (const name of (await readdir(output)).sort()) {
    // lstat: a symbolic link the recipe left is not followed to a file of the host.
    if ((await lstat(join(output, name))).isFile()) files.push(join(output, name));
    else log.note(`not uploading ${name}: only plain files in the artifacts directory are collected`);
  }
  if (files.length === 0) return { type: 'built', result: 'failure', reason: 'the recipe left no artifacts', changes: null, files: [] };
  log.note(`collected ${files.length} image artifact(s)`);
  return { type: 'built', result: 'success', reason: null, changes: null, files };
}

function ended(run: RunOutcome, signal: AbortSignal, failure: string): RunnerOutcome {
  const stop = run.stopped ?? (signal.aborted ? stopReason(signal) : null);
  if (stop?.rejectsJob) return { type: 'rejected', reason: stop.message };
  return { type: 'built', result: 'failure', reason: stop ? `build stopped: ${stop.message}` : failure, changes: null, files: [] };
}

async function isFile(path: string): Promise<boolean> {
  try {
    await access(path);
    return (await stat(path)).isFile();
  } catch {
    return false;
  }
}
