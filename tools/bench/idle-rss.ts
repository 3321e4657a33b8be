/*
 * Idle memory of what operators run: each service started from its esbuild
 * bundle (as the Debian package installs it, tools/bench/bundles.ts) or from
 * its `dist/` entry (deploy/install.sh's installation), with the flags
 * production gives it (nodeFlags of @spark/config, as the launchers give
 * them), metrics on as by default, against a bare `node` started in the same
 * run; and `spark run`'s supervisor, with the `spark` command's flags, as its
 * launcher starts it.
 * `dist/` needs `npm run build` first.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { setTimeout as sleep } from 'node:timers/promises';
import { freePort, procStatusKiB } from '@spark/testing';
import { SERVICES } from '@spark/cli';
import { nodeFlags as productionFlags } from '@spark/config';
import { startChain, type Chain, type ServiceName } from '../src/chain/chain.js';
import { chainJobs, clearUploads, untilPolling, untilSuccess, type Prebuilt } from './chain-jobs.js';

/** The built `spark` command, as deploy/install.sh installs it. */
const CLI_DIST = fileURLToPath(new URL('../../apps/cli/dist/main.js', import.meta.url));

/** What {@link measureIdleRss} measured, VmRSS in KiB. */
export interface IdleRss {
  /** A bare `node` idling (`setInterval`) with no flags, started in the same run. */
  bareNode: number;
  /** A bare `node` with the lean services' flags (those of the connector, signer and uploader). */
  bareNodeWithFlags: number;
  /** Each service after `idleSeconds` idle, from `dist/` with its production flags. */
  services: Record<ServiceName, number>;
  /** Each service `idleSeconds` after one job passed through all four (only when `prebuilt` was given). */
  afterJob: Record<ServiceName, number> | null;
  /** The four services' sum after idling: the idle RSS of the whole worker. */
  worker: number;
  /** `spark run`'s own process (without its children) after `idleSeconds`, or NaN when not measured. */
  supervisor: number;
  /** The flags each service ran with. */
  nodeFlags: Record<ServiceName, readonly string[]>;
}

/** Options of {@link measureIdleRss}. */
export interface IdleRssOptions {
  /** Seconds each phase idles before VmRSS is read (default 30). */
  idleSeconds?: number;
  /** Prebuilt packages for the no-op runner (chain-jobs.ts): when given, one job passes through and the services are measured again. */
  prebuilt?: Prebuilt;
  /** Measure `spark run`'s supervisor too (default true). */
  supervisor?: boolean;
  /** V8 flags for every service (default: each its production flags). */
  nodeFlags?: readonly string[];
  /** Node flags of `spark run`'s own process (default the `spark` command's, as its launcher starts it). */
  supervisorNodeFlags?: readonly string[];
  /** A directory of bundles (bundles.ts): the services and `spark run` run from it (default: from `dist/`). */
  bundles?: string;
}

function idleNode(flags: readonly string[]): ChildProcess {
  return spawn(process.execPath, [...flags, '-e', 'setInterval(() => undefined, 1000)'], { stdio: 'ignore' });
}

async function stopChild(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;
  const exited = once(child, 'exit');
  child.kill('SIGTERM');
  await exited;
}

async function rssOf(chain: Chain): Promise<Record<ServiceName, number>> {
  const rss = {} as Record<ServiceName, number>;
  for (const name of SERVICES) rss[name] = await procStatusKiB(chain.pid(name) ?? 0, 'VmRSS');
  return rss;
}

/**
 * Idle RSS of each service of the built worker, of the whole worker (their
 * sum) and of `spark run`'s supervisor, next to a bare `node` measured in the
 * same run. The services run against the chain's stand-ins (tools/src/chain)
 * with metrics on, as by default.
 */
export async function measureIdleRss(options: IdleRssOptions = {}): Promise<IdleRss> {
  const idleMs = (options.idleSeconds ?? 30) * 1000;
  const flagsOf = (name: ServiceName) => options.nodeFlags ?? productionFlags(name);
  const nodeFlags = Object.fromEntries(SERVICES.map((name) => [name, flagsOf(name)])) as Record<ServiceName, readonly string[]>;
  const metricsPorts = { connector: await freePort(), builder: await freePort(), signer: await freePort(), uploader: await freePort() };
  const chain = await startChain({
    runner: 'noop',
    pollInterval: 5,
    build: 'dist',
    ...(options.bundles ? { bundles: options.bundles } : {}),
    metricsPorts,
    ...(options.nodeFlags ? { nodeFlags: options.nodeFlags } : {}),
  });
  const bare = idleNode([]);
  const bareWithFlags = idleNode(flagsOf('connector'));
  try {
    chain.start();
    await untilPolling(chain);
    await sleep(idleMs);
    const services = await rssOf(chain);
    const bareNode = await procStatusKiB(bare.pid ?? 0, 'VmRSS');
    const bareNodeWithFlags = await procStatusKiB(bareWithFlags.pid ?? 0, 'VmRSS');

    let afterJob: Record<ServiceName, number> | null = null;
    if (options.prebuilt) {
      const spec = options.prebuilt.specs[0] ?? { name: 'bench0', version: '1.0' };
      const [job] = await chainJobs(chain, [spec]);
      if (!job) throw new Error('no job for the prebuilt package');
      const from = chain.standIn.requests.length;
      chain.standIn.addJob(job);
      await untilSuccess(chain, job.uuid, from);
      await clearUploads(chain);
      await sleep(idleMs);
      afterJob = await rssOf(chain);
    }

    let supervisor = NaN;
    if (options.supervisor ?? true) {
      await Promise.all(SERVICES.map((name) => chain.stop(name)));
      // `spark run` as an operator starts it: the CLI through its launcher's flags; it starts the services beside it.
      const cli = options.bundles ? join(options.bundles, 'node_modules/@spark/cli/dist/main.js') : CLI_DIST;
      const run = spawn(
        process.execPath,
        [...(options.supervisorNodeFlags ?? options.nodeFlags ?? productionFlags('cli')), cli, 'run', '--config', chain.configFile],
        {
          stdio: 'ignore',
        },
      );
      try {
        await sleep(idleMs);
        supervisor = await procStatusKiB(run.pid ?? 0, 'VmRSS');
      } finally {
        await stopChild(run);
      }
    }
    const worker = SERVICES.reduce((sum, name) => sum + services[name], 0);
    return { bareNode, bareNodeWithFlags, services, afterJob, worker, supervisor, nodeFlags };
  } finally {
    await stopChild(bare);
    await stopChild(bareWithFlags);
    await chain.close();
  }
}

/**
 * The idle RSS of the whole worker in KiB: the four services of the built
 * worker after `idleSeconds` idle (default 30), summed (VmRSS, which counts
 * the node binary's shared pages once per process, as `ps` does).
 */
export async function idleRssOfWorkerKiB(idleSeconds = 30): Promise<number> {
  return (await measureIdleRss({ idleSeconds, supervisor: false })).worker;
}

const mib = (kib: number) => `${(kib / 1024).toFixed(0)} MiB`;

/** The benchmark's lines: {@link measureIdleRss} with one job, each figure next to the bare node, for each build. */
export async function benchIdleRss(prebuilt: Prebuilt, builds: { label: string; bundles?: string }[]): Promise<string[]> {
  const lines: string[] = [];
  for (const { label, bundles } of builds) {
    const rss = await measureIdleRss({ prebuilt, ...(bundles ? { bundles } : {}) });
    const each = (values: Record<ServiceName, number>) =>
      SERVICES.map((name) => `${name} ${mib(values[name])} (+${mib(values[name] - rss.bareNode)})`).join(', ');
    const flags = SERVICES.map((name) => `${name} ${rss.nodeFlags[name].join(' ')}`).join('; ');
    lines.push(
      `idle RSS, ${label} (VmRSS after 30 s idle; production flags: ${flags}; metrics on): ${each(rss.services)}; whole worker ${mib(rss.worker)}; +: above a bare node in the same run, ${mib(rss.bareNode)} (${mib(rss.bareNodeWithFlags)} with the connector's flags)`,
      ...(rss.afterJob ? [`  30 s after one job passed through: ${each(rss.afterJob)}`] : []),
      `  spark run's supervisor (${productionFlags('cli').join(' ')}): ${mib(rss.supervisor)} (+${mib(rss.supervisor - rss.bareNode)})`,
    );
  }
  return lines;
}
