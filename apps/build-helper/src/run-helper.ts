import { existsSync, readFileSync } from 'node:fs';
import { chmod, lstat, mkdir, mkdtemp, readFile, readdir, rm } from 'node:fs/promises';
import { basename, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { isSafeFileName, parseControlFile, parseFileList } from '@spark/protocol';
import { copyTreeAsCaller, readAsCaller, writeAsCaller, type Caller } from './hand-over.js';
import { loadHelperConfig, SECURE_PATH, type HelperConfig } from './helper-config.js';
import { runOwned } from './process-tree.js';
import { RefusedRequest, type HelperRequest, type ImageRunRequest, type PackageBuildRequest } from './request.js';
import { checkSameWorkspace, checkWorkspacePath } from './workspace-paths.js';

/** Exit code for a refused request (sysexits' EX_USAGE). */
export const EXIT_REFUSED = 64;
/** Exit code when the helper itself failed (EX_SOFTWARE). */
export const EXIT_FAILED = 70;
/** Exit code when the run was stopped (128 + SIGTERM). */
export const EXIT_STOPPED = 143;

/** Where systemd registers machines; without it, systemd-nspawn needs `--keep-unit`. */
const SYSTEM_BUS_SOCKET = '/run/dbus/system_bus_socket';

/** The helper's own `systemd-nspawn` wrapper (adds `--keep-unit`), shipped beside `src/` and `dist/`. */
const NSPAWN_WRAPPER_DIR = fileURLToPath(new URL('../nspawn-wrapper', import.meta.url));

/** How the helper was started and what it may use. */
export interface HelperContext {
  configFile: string;
  /** Root-only directory for private copies of inputs and outputs. */
  stateDir: string;
  caller: Caller;
  killGraceMs: number;
  stopWhen: Promise<string>;
  /** Messages of the helper itself (they land in the job log). */
  say: (message: string) => void;
}

function debspawnEnv(): Record<string, string> {
  const path = existsSync(SYSTEM_BUS_SOCKET) ? SECURE_PATH : `${NSPAWN_WRAPPER_DIR}:${SECURE_PATH}`;
  return { PATH: path, LANG: 'C.UTF-8', HOME: '/root', TERM: 'dumb' };
}

/** True while `pid` is a running build helper (its private directory is still in use). */
function helperRunning(pid: number): boolean {
  try {
    return readFileSync(`/proc/${pid}/cmdline`, 'utf8').includes('build-helper');
  } catch {
    return false;
  }
}

/**
 * A fresh directory only root can enter (`run-<pid>-XXXXXX`), in a state
 * directory that must be root's alone. Directories of helpers that no longer
 * run (killed with their unit's control group) are removed first.
 */
async function privateDir(stateDir: string): Promise<string> {
  await mkdir(stateDir, { recursive: true, mode: 0o700 });
  const info = await lstat(stateDir);
  if (!info.isDirectory() || info.uid !== 0 || (info.mode & 0o077) !== 0) {
    throw new Error(`${stateDir} must be a directory owned by root with mode 0700`);
  }
  for (const name of await readdir(stateDir)) {
    const pid = /^run-([0-9]+)-/.exec(name)?.[1];
    if (pid !== undefined && Number(pid) !== process.pid && !helperRunning(Number(pid))) {
      await rm(join(stateDir, name), { recursive: true, force: true });
    }
  }
  return mkdtemp(join(stateDir, `run-${process.pid}-`));
}

/** Hands every regular file of `from` to the caller in `to`; reports what it skipped. */
async function handBack(ctx: HelperContext, from: string, to: string): Promise<number> {
  let count = 0;
  for (const name of (await readdir(from)).sort()) {
    const info = await lstat(join(from, name));
    if (!info.isFile() || !isSafeFileName(name)) {
      ctx.say(`not handing back ${JSON.stringify(name)}: only plain files with plain names are`);
      continue;
    }
    await writeAsCaller(ctx.caller, join(from, name), join(to, name));
    count++;
  }
  return count;
}

async function run(ctx: HelperContext, config: HelperConfig, args: string[], cwd: string): Promise<number> {
  const outcome = await runOwned(config.debspawn, args, {
    env: debspawnEnv(),
    cwd,
    killGraceMs: ctx.killGraceMs,
    stopWhen: ctx.stopWhen,
    onStop: (reason) => ctx.say(`stopping debspawn and everything it started: ${reason}`),
  });
  if (outcome.stopped) return EXIT_STOPPED;
  return outcome.exitCode ?? 128;
}

async function runPackageBuild(ctx: HelperContext, config: HelperConfig, request: PackageBuildRequest): Promise<number> {
  const dsc = await checkWorkspacePath(config.workspacesDir, request.dsc, 'file', 'the .dsc');
  const results = await checkWorkspacePath(config.workspacesDir, request.resultsDir, 'directory', '--results-dir');
  checkSameWorkspace([dsc, results]);
  const work = await privateDir(ctx.stateDir);
  try {
    const source = join(work, 'source');
    const output = join(work, 'results');
    await mkdir(source);
    await mkdir(output);
    const dscName = basename(request.dsc);
    if (!isSafeFileName(dscName)) throw new RefusedRequest(`the .dsc: ${JSON.stringify(dscName)} is not a plain file name`);
    const privateDsc = join(source, dscName);
    await readAsCaller(ctx.caller, request.dsc, privateDsc);
    const paragraph = parseControlFile(await readFile(privateDsc, 'utf8')).paragraphs[0];
    for (const entry of parseFileList(paragraph?.get('Files'))) {
      if (!isSafeFileName(entry.name) || entry.name === dscName) {
        throw new RefusedRequest(`the .dsc lists ${JSON.stringify(entry.name)}, which is not a plain file name`);
      }
      await readAsCaller(ctx.caller, join(request.dsc, '..', entry.name), join(source, entry.name));
    }
    const args = ['build'];
    args.push('--no-buildlog', `--arch=${request.arch}`, `--results-dir=${output}`, `--only=${request.only}`);
    if (request.maintainer !== null) args.push(`--maintainer=${request.maintainer}`);
    args.push(request.suite, privateDsc);
    const code = await run(ctx, config, args, work);
    const handed = await handBack(ctx, output, request.resultsDir);
    if (handed > 0) ctx.say(`handed ${handed} result file(s) back to ${request.resultsDir}`);
    return code;
  } finally {
    await rm(work, { recursive: true, force: true });
  }
}

/** The names the builder gives the image run's files in its workspace (apps/builder/src/image-build.ts). */
const IMAGE_LAYOUT = { artifactsOut: 'image', buildDir: 'ib', script: 'build-command.sh', init: 'prepare-command.sh' } as const;

async function runImageBuild(ctx: HelperContext, config: HelperConfig, request: ImageRunRequest): Promise<number> {
  const checked = [
    await checkWorkspacePath(config.workspacesDir, request.artifactsOut, 'directory', '--artifacts-out'),
    await checkWorkspacePath(config.workspacesDir, request.buildDir, 'directory', '--build-dir'),
    await checkWorkspacePath(config.workspacesDir, request.script, 'file', 'the script'),
    ...(request.init ? [await checkWorkspacePath(config.workspacesDir, request.init.command, 'file', '--init-command')] : []),
  ];
  checkSameWorkspace(checked);
  const expected = [IMAGE_LAYOUT.artifactsOut, IMAGE_LAYOUT.buildDir, IMAGE_LAYOUT.script, IMAGE_LAYOUT.init];
  checked.forEach((path, index) => {
    if (path.inside !== expected[index]) {
      throw new RefusedRequest(`${path.path}: the image run uses <workspace>/${expected[index] as string} here, nothing else`);
    }
  });
  const work = await privateDir(ctx.stateDir);
  try {
    const artifacts = join(work, 'artifacts');
    await mkdir(artifacts);
    const script = join(work, IMAGE_LAYOUT.script);
    await readAsCaller(ctx.caller, request.script, script);
    await chmod(script, 0o755);
    // The recipe checkout, copied with the caller's rights: debspawn mounts the copy, which the caller cannot swap.
    const recipe = join(work, IMAGE_LAYOUT.buildDir);
    await copyTreeAsCaller(ctx.caller, request.buildDir, recipe);
    const args = ['run', '--external-command', `--arch=${request.arch}`, '--artifacts-out', artifacts, '--build-dir', recipe];
    if (request.allowKvm) args.push('--allow=kvm,read-kmods');
    if (request.init) {
      const init = join(work, IMAGE_LAYOUT.init);
      await readAsCaller(ctx.caller, request.init.command, init);
      await chmod(init, 0o755);
      args.push('--cachekey', request.init.cacheKey, '--init-command', init);
    }
    args.push(`--header=${request.header}`, request.suite, script);
    const code = await run(ctx, config, args, work);
    await handBack(ctx, artifacts, request.artifactsOut);
    return code;
  } finally {
    await rm(work, { recursive: true, force: true });
  }
}

/** Checks `request` against spark.toml and the disk, runs it, and returns the helper's exit code. */
export async function runRequest(ctx: HelperContext, request: HelperRequest): Promise<number> {
  const config = await loadHelperConfig(ctx.configFile);
  switch (request.kind) {
    case 'version':
      return run(ctx, config, ['--version'], '/');
    case 'build':
      return runPackageBuild(ctx, config, request);
    case 'image-run':
      return runImageBuild(ctx, config, request);
  }
}
