import { constants, readFileSync } from 'node:fs';
import { chmod, lstat, mkdir, mkdtemp, open, readFile, readdir, readlink, rm } from 'node:fs/promises';
import { basename, dirname, isAbsolute, join, normalize } from 'node:path';
import { isSafeFileName, parseControlFile, parseFileList } from '@spark/protocol';
import { loadDebspawnDirs } from './debspawn-dirs.js';
import { copyTreeAsCaller, readAsCaller, writeAsCaller, type Caller } from './hand-over.js';
import { loadHelperConfig, type HelperConfig } from './helper-config.js';
import { imageCacheKey } from './image-cache-key.js';
import { runOwned } from './process-tree.js';
import { RefusedRequest, type HelperRequest, type ImageRunRequest, type PackageBuildRequest } from './request.js';
import { inspectHost, JOB_MOUNT, prepareSandbox, sandboxCommand, throwawayUid, type JobBind, type SandboxSpec } from './sandbox.js';
import { checkSameWorkspace, checkWorkspacePath } from './workspace-paths.js';

/** Exit code for a refused request (sysexits' EX_USAGE). */
export const EXIT_REFUSED = 64;
/** Exit code when the helper itself failed (EX_SOFTWARE). */
export const EXIT_FAILED = 70;
/** Exit code when the run was stopped (128 + SIGTERM). */
export const EXIT_STOPPED = 143;
/** Exit code when the build's output held something other than regular files (sysexits' EX_DATAERR; sandbox/python/sitecustomize.py too). */
export const EXIT_REFUSED_OUTPUT = 65;

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

/** Why `name` in a build's output is refused, or null for a regular file with a plain name. */
async function refusal(dir: string, name: string): Promise<string | null> {
  const info = await lstat(join(dir, name));
  if (info.isSymbolicLink()) return `build output holds a symbolic link: ${name} -> ${await readlink(join(dir, name))}`;
  if (info.isFIFO()) return `build output holds a FIFO: ${name}`;
  if (info.isSocket()) return `build output holds a socket: ${name}`;
  if (info.isBlockDevice() || info.isCharacterDevice()) return `build output holds a device: ${name}`;
  if (info.isDirectory()) return `build output holds a directory: ${name}`;
  if (!isSafeFileName(name)) return `build output holds a file whose name is not plain: ${JSON.stringify(name)}`;
  return null;
}

/**
 * Hands every file of `from` to the caller in `to`, each opened without
 * following a link and checked to be a regular file. Anything else in `from`
 * refuses the whole output before any file is handed back: the helper says
 * why (BUILD_REFUSED of @spark/protocol) and the run ends with
 * {@link EXIT_REFUSED_OUTPUT}.
 */
async function handBack(ctx: HelperContext, from: string, to: string): Promise<number | null> {
  const names = (await readdir(from)).sort();
  for (const name of names) {
    const reason = await refusal(from, name);
    if (reason !== null) {
      // say() prefixes 'spark-build-helper: ', which makes the line BUILD_REFUSED + reason.
      ctx.say(`refused build: ${reason}`);
      return null;
    }
  }
  for (const name of names) {
    const handle = await open(join(from, name), constants.O_RDONLY | constants.O_NOFOLLOW);
    try {
      if (!(await handle.stat()).isFile()) throw new Error(`${name} changed while it was handed back`);
      await writeAsCaller(ctx.caller, handle, join(to, name));
    } finally {
      await handle.close();
    }
  }
  return names.length;
}

/**
 * Why the recipe copy `dir` is refused, or null: a symbolic link that leads
 * out of the checkout (absolute, or up past its top). debspawn copies the
 * recipe following links; inside the sandbox such a link reaches no secret,
 * but a recipe that tries is refused with its reason rather than left to fail
 * in debspawn's copy. Links inside the checkout are kept, as git made them.
 */
async function recipeRefusal(dir: string, prefix = ''): Promise<string | null> {
  for (const name of (await readdir(join(dir, prefix))).sort()) {
    const rel = prefix === '' ? name : `${prefix}/${name}`;
    const info = await lstat(join(dir, rel));
    if (info.isSymbolicLink()) {
      const target = await readlink(join(dir, rel));
      if (isAbsolute(target) || normalize(join(dirname(rel), target)).split('/')[0] === '..') {
        return `the recipe holds a symbolic link out of its checkout: ${rel} -> ${target}`;
      }
    } else if (info.isDirectory() && !(prefix === '' && name === '.git')) {
      const inner = await recipeRefusal(dir, rel);
      if (inner !== null) return inner;
    }
  }
  return null;
}

/** Runs debspawn with `args` in the sandbox of `spec` (sandbox.ts), owning everything it starts. */
async function run(ctx: HelperContext, config: HelperConfig, spec: SandboxSpec, args: string[]): Promise<number> {
  const host = await inspectHost(spec.dirs);
  await prepareSandbox(spec, host);
  const command = sandboxCommand(spec, host, await throwawayUid(), config.debspawn, args);
  const outcome = await runOwned(command.file, command.args, {
    env: command.env,
    cwd: spec.runDir,
    killGraceMs: ctx.killGraceMs,
    stopWhen: ctx.stopWhen,
    onStop: (reason) => ctx.say(`stopping debspawn and everything it started: ${reason}`),
  });
  if (outcome.stopped) return EXIT_STOPPED;
  return outcome.exitCode ?? 128;
}

/** The sandbox of a run in `runDir` showing `jobBinds`. */
async function sandboxSpec(config: HelperConfig, runDir: string, jobBinds: JobBind[], writableImageCache: boolean): Promise<SandboxSpec> {
  return { runDir, debspawn: config.debspawn, dirs: await loadDebspawnDirs(), jobBinds, writableImageCache };
}

async function runPackageBuild(ctx: HelperContext, config: HelperConfig, request: PackageBuildRequest): Promise<number> {
  const dsc = await checkWorkspacePath(config.workspacesDir, request.dsc, 'file', 'the .dsc');
  const results = await checkWorkspacePath(config.workspacesDir, request.resultsDir, 'directory', '--results-dir');
  checkSameWorkspace([dsc, results]);
  const work = await privateDir(ctx.stateDir);
  try {
    const source = join(work, 'source');
    const output = join(work, 'results');
    // Readable by the sandbox's throwaway user, which unpacks the source; reachable only inside the sandbox.
    await mkdir(source, { mode: 0o755 });
    await mkdir(output, { mode: 0o755 });
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
    for (const name of await readdir(source)) await chmod(join(source, name), 0o644);
    const args = ['build'];
    args.push('--no-buildlog', `--arch=${request.arch}`, `--results-dir=${JOB_MOUNT}/results`, `--only=${request.only}`);
    if (request.maintainer !== null) args.push(`--maintainer=${request.maintainer}`);
    args.push(request.suite, `${JOB_MOUNT}/source/${dscName}`);
    const binds = [
      { source, name: 'source', writable: false },
      { source: output, name: 'results', writable: true },
    ];
    const code = await run(ctx, config, await sandboxSpec(config, work, binds, false), args);
    const handed = await handBack(ctx, output, request.resultsDir);
    if (handed === null) return EXIT_REFUSED_OUTPUT;
    if (handed > 0) ctx.say(`handed ${handed} result file(s) back to ${request.resultsDir}`);
    return code;
  } finally {
    await rm(work, { recursive: true, force: true });
  }
}

/**
 * The names the builder gives the image run's files (apps/builder/src/image-build.ts),
 * in the directory of one run of the job: `<workspace>/run-<uuid>/` (apps/builder/src/process-job.ts).
 */
const RUN_DIR = /^run-[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;
/** The names the builder gives the image run's files in a run directory. */
const IMAGE_LAYOUT = { artifactsOut: 'image', buildDir: 'ib', script: 'build-command.sh', init: 'prepare-command.sh' } as const;

async function runImageBuild(ctx: HelperContext, config: HelperConfig, request: ImageRunRequest): Promise<number> {
  const checked = [
    await checkWorkspacePath(config.workspacesDir, request.artifactsOut, 'directory', '--artifacts-out'),
    await checkWorkspacePath(config.workspacesDir, request.buildDir, 'directory', '--build-dir'),
    await checkWorkspacePath(config.workspacesDir, request.script, 'file', 'the script'),
    ...(request.init ? [await checkWorkspacePath(config.workspacesDir, request.init.command, 'file', '--init-command')] : []),
  ];
  checkSameWorkspace(checked);
  const runDir = checked[2]?.inside.split('/')[0] ?? '';
  if (!RUN_DIR.test(runDir))
    throw new RefusedRequest(`${request.script}: the image run's files lie in <workspace>/run-<uuid>/, nothing else`);
  const expected = [IMAGE_LAYOUT.artifactsOut, IMAGE_LAYOUT.buildDir, IMAGE_LAYOUT.script, IMAGE_LAYOUT.init];
  checked.forEach((path, index) => {
    if (path.inside !== `${runDir}/${expected[index] as string}`) {
      throw new RefusedRequest(`${path.path}: the image run uses <workspace>/${runDir}/${expected[index] as string} here, nothing else`);
    }
  });
  const work = await privateDir(ctx.stateDir);
  try {
    const artifacts = join(work, 'artifacts');
    const scripts = join(work, 'scripts');
    await mkdir(artifacts, { mode: 0o755 });
    await mkdir(scripts, { mode: 0o755 });
    const script = join(scripts, IMAGE_LAYOUT.script);
    await readAsCaller(ctx.caller, request.script, script);
    await chmod(script, 0o755);
    // The recipe checkout, read with the caller's rights and written by the run's throwaway user, never the caller.
    const recipe = join(work, 'recipe');
    await copyTreeAsCaller(ctx.caller, request.buildDir, recipe, await throwawayUid());
    const refused = await recipeRefusal(recipe);
    if (refused !== null) {
      ctx.say(`refused build: ${refused}`);
      return EXIT_REFUSED_OUTPUT;
    }
    const args = ['run', '--external-command', `--arch=${request.arch}`, '--artifacts-out', `${JOB_MOUNT}/artifacts`];
    args.push('--build-dir', `${JOB_MOUNT}/recipe`);
    if (request.allowKvm) args.push('--allow=kvm,read-kmods');
    if (request.init) {
      const init = join(scripts, IMAGE_LAYOUT.init);
      await readAsCaller(ctx.caller, request.init.command, init);
      await chmod(init, 0o755);
      const cacheKey = await imageCacheKey(request.init.cacheKey, request.arch, recipe, init);
      ctx.say(`prepared-image cache key: ${cacheKey}`);
      args.push('--cachekey', cacheKey, '--init-command', `${JOB_MOUNT}/scripts/${IMAGE_LAYOUT.init}`);
    }
    args.push(`--header=${request.header}`, request.suite, `${JOB_MOUNT}/scripts/${IMAGE_LAYOUT.script}`);
    const binds = [
      { source: recipe, name: 'recipe', writable: false },
      { source: scripts, name: 'scripts', writable: false },
      { source: artifacts, name: 'artifacts', writable: true },
    ];
    const code = await run(ctx, config, await sandboxSpec(config, work, binds, request.init !== null), args);
    const handed = await handBack(ctx, artifacts, request.artifactsOut);
    if (handed === null) return EXIT_REFUSED_OUTPUT;
    return code;
  } finally {
    await rm(work, { recursive: true, force: true });
  }
}

/** Checks `request` against spark.toml and the disk, runs it, and returns the helper's exit code. */
export async function runRequest(ctx: HelperContext, request: HelperRequest): Promise<number> {
  const config = await loadHelperConfig(ctx.configFile);
  switch (request.kind) {
    case 'version': {
      const work = await privateDir(ctx.stateDir);
      try {
        return await run(ctx, config, await sandboxSpec(config, work, [], false), ['--version']);
      } finally {
        await rm(work, { recursive: true, force: true });
      }
    }
    case 'build':
      return runPackageBuild(ctx, config, request);
    case 'image-run':
      return runImageBuild(ctx, config, request);
  }
}
