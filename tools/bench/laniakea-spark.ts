import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { existsSync, renameSync, rmSync } from 'node:fs';
import { copyFile, mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import type { Chain } from '../src/chain/chain.js';

const run = promisify(execFile);

/**
 * Runs laniakea-spark (github.com/lkhq/laniakea-spark, the Python worker this
 * project replaces) from a source tree against a chain's stand-ins, for the
 * side-by-side benchmark. Nothing here downloads or builds it: the source
 * comes from `LANIAKEA_SPARK_SRC`, its imports from Debian's python3-zmq,
 * python3-tomlkit and python3-debian, and `firehose` (not packaged any more)
 * from the minimal module in ./laniakea-spark-shims.
 */

/** Debian's interpreter: the python3-* packages are installed for it, not for a pyenv or venv python on PATH. */
const PYTHON = '/usr/bin/python3';
const SHIMS = fileURLToPath(new URL('./laniakea-spark-shims', import.meta.url));
/** Where laniakea-spark reads its config and keys; fixed in its source (spark/config.py). */
const ETC = '/etc/laniakea';

/** The laniakea-spark source to run, or why the comparison is skipped. */
export type LaniakeaSparkSource = { src: string } | { skipped: string };

/** Checks `LANIAKEA_SPARK_SRC` and everything laniakea-spark needs at run time. */
export async function findLaniakeaSpark(env: NodeJS.ProcessEnv = process.env): Promise<LaniakeaSparkSource> {
  const src = env['LANIAKEA_SPARK_SRC'];
  if (!src) return { skipped: 'LANIAKEA_SPARK_SRC not set' };
  if (!existsSync(join(src, 'spark', 'daemon.py'))) return { skipped: `LANIAKEA_SPARK_SRC=${src} holds no spark/daemon.py` };
  if (!existsSync(PYTHON)) return { skipped: `${PYTHON} not found` };
  try {
    await run(PYTHON, ['-c', 'import zmq, tomlkit, debian.deb822, dput'], { env: { ...env, PYTHONPATH: SHIMS } });
  } catch (error) {
    const message = String((error as { stderr?: unknown }).stderr ?? error)
      .trim()
      .split('\n')
      .at(-1);
    return { skipped: `a Python module is missing (apt-get install python3-zmq python3-tomlkit python3-debian dput-ng): ${message}` };
  }
  for (const tool of ['dget', 'debsign', 'dput', 'gpg']) {
    try {
      await run('sh', ['-c', `command -v ${tool}`]);
    } catch {
      return { skipped: `${tool} not found (laniakea-spark runs it; apt-get install devscripts dput-ng gnupg)` };
    }
  }
  if (process.getuid?.() !== 0) return { skipped: `laniakea-spark reads ${ETC}, which only root may replace for the run` };
  return { src };
}

/** A running laniakea-spark daemon. */
export interface LaniakeaSpark {
  /** The daemon's process id (its worker runs in it: MaxJobs 1 forks no worker processes). */
  pid: number;
  /** Stops it (and any build it runs), then puts /etc/laniakea back as it was. Safe to call twice. */
  stop(): Promise<void>;
}

/** Options of {@link startLaniakeaSpark}. */
export interface LaniakeaSparkOptions {
  src: string;
  /** Directory put first on PATH: its `debspawn` is the runner laniakea-spark calls. */
  runnerDir: string;
  /** Called with every line the daemon writes. */
  onLog?: (line: string) => void;
}

/**
 * Moves /etc/laniakea aside and writes laniakea-spark's spark.toml and CURVE
 * key files there, with the chain's machine name, keys, OpenPGP key, and
 * MaxJobs 1, so it talks to the same Lighthouse stand-in and uploads to the
 * same receiver as our services. The original comes back on stop(), on exit
 * and on SIGINT/SIGTERM.
 */
export async function startLaniakeaSpark(chain: Chain, options: LaniakeaSparkOptions): Promise<LaniakeaSpark> {
  const backup = `${ETC}.spark-bench-${process.pid}`;
  const hadEtc = existsSync(ETC);
  if (hadEtc) renameSync(ETC, backup);
  let restored = false;
  const restore = () => {
    if (restored) return;
    restored = true;
    rmSync(ETC, { recursive: true, force: true });
    if (hadEtc) renameSync(backup, ETC);
  };
  let child: ChildProcess | null = null;
  const onSignal = (signal: NodeJS.Signals) => {
    // The daemon runs in a process group of its own, so a signal to ours does not reach it.
    if (child?.pid && child.exitCode === null && child.signalCode === null) process.kill(-child.pid, 'SIGKILL');
    restore();
    process.kill(process.pid, signal);
  };
  process.once('exit', restore);
  process.once('SIGINT', onSignal);
  process.once('SIGTERM', onSignal);
  const forget = () => {
    process.off('exit', restore);
    process.off('SIGINT', onSignal);
    process.off('SIGTERM', onSignal);
  };

  try {
    const machine = chain.config.machineName;
    const curve = join(ETC, 'keys', 'curve');
    await mkdir(join(curve, 'secret'), { recursive: true, mode: 0o700 });
    const secret = `${machine}-spark_private.sec`;
    const server = `${machine}_lighthouse-server.pub`;
    await copyFile(join(chain.config.curveKeysDir, 'secret', secret), join(curve, 'secret', secret));
    await copyFile(join(chain.config.curveKeysDir, server), join(curve, server));
    const workspaceRoot = join(chain.dir, 'laniakea-spark');
    await mkdir(workspaceRoot, { recursive: true });
    await writeFile(
      join(ETC, 'spark.toml'),
      `# Written by tools/bench/laniakea-spark.ts for the side-by-side benchmark; removed when it ends.
LighthouseServer = '${chain.config.lighthouseServer}'
MachineName = '${machine}'
MachineOwner = 'Spark bench'
AcceptedJobs = ['package-build']
Architectures = ['amd64']
GpgKeyID = '${chain.key.fingerprint}'
MaxJobs = 1
WorkspaceRoot = '${workspaceRoot}'
`,
    );
    const spawned = spawn(PYTHON, ['-c', 'from spark.cli import daemon; daemon()'], {
      cwd: workspaceRoot,
      detached: true,
      stdio: ['ignore', 'pipe', 'pipe'],
      env: {
        ...process.env,
        PATH: `${options.runnerDir}:${process.env['PATH'] ?? '/usr/bin:/bin'}`,
        PYTHONPATH: [options.src, SHIMS].join(':'),
        GNUPGHOME: chain.key.home,
        PYTHONUNBUFFERED: '1',
      },
    });
    child = spawned;
    for (const stream of [spawned.stdout, spawned.stderr]) {
      createInterface({ input: stream, crlfDelay: Infinity }).on('line', (line) => options.onLog?.(line));
    }
    await once(spawned, 'spawn');
  } catch (error) {
    child?.kill('SIGKILL');
    restore();
    forget();
    throw error;
  }
  const daemon = child;
  let stopped: Promise<void> | null = null;
  return {
    pid: daemon.pid ?? 0,
    stop: () =>
      (stopped ??= (async () => {
        if (daemon.exitCode === null && daemon.signalCode === null) {
          const exited = once(daemon, 'exit');
          // Its own process group: the daemon and whatever build, dput or gpg it runs.
          process.kill(-(daemon.pid ?? 0), 'SIGTERM');
          const timer = setTimeout(() => process.kill(-(daemon.pid ?? 0), 'SIGKILL'), 10_000);
          await exited;
          clearTimeout(timer);
        }
        await run('gpgconf', ['--homedir', chain.key.home, '--kill', 'gpg-agent']).catch(() => undefined);
        restore();
        forget();
      })()),
  };
}
