/*
 * Start-up: the four services spawned at the same moment (as systemd starts
 * their units) with a job waiting at the Lighthouse stand-in, each with its
 * production flags; from the spawn, for each service: node booted (the probe,
 * {@link PROBE}, runs), the first TCP connection opened (its modules are
 * loaded and its config read: the first connection is to Redis), its "started"
 * line (Redis ready, queues open); then the connector's first Lighthouse
 * request and the hand-out of the waiting job. The baseline is a bare `node`
 * started and exiting (`node -e 0`) in the same run.
 */
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { median, waitFor } from '@spark/testing';
import { SERVICES } from '@spark/cli';
import { startChain, type ServiceName } from '../src/chain/chain.js';

/**
 * Loaded into each service with `--import` (a data: URL, so it needs no file):
 * writes to stderr, one JSON line each, when node has booted (it runs before
 * the program's modules) and when the program opens its first TCP connection
 * (its modules are loaded and its config read by then: the first is to Redis),
 * as epoch ms.
 */
const PROBE = `import net from 'node:net';
const now = () => performance.timeOrigin + performance.now();
process.stderr.write(JSON.stringify({ startProbe: 'booted', at: now() }) + '\\n');
const connect = net.Socket.prototype.connect;
let first = true;
net.Socket.prototype.connect = function (...args) {
  if (first) {
    first = false;
    process.stderr.write(JSON.stringify({ startProbe: 'connect', at: now() }) + '\\n');
  }
  return connect.apply(this, args);
};`;

/** The log line that says a service is ready. */
const READY: Record<ServiceName, string> = {
  connector: 'connector started',
  builder: 'builder started',
  signer: 'taking sign jobs',
  uploader: 'uploader started',
};

/** One start, ms from the spawn. */
export interface StartTimes {
  services: Record<ServiceName, { booted: number; connect: number; ready: number }>;
  /** The connector's first request to Lighthouse (archive-info). */
  firstRequest: number;
  /** The job request answered with the waiting job. */
  handOut: number;
}

/** Which programs run: the built `dist/` entries, or the bundles in a directory made by bundlePrograms. */
export type StartBuild = { kind: 'dist' } | { kind: 'bundle'; dir: string };

/** Starts the worker once with a job waiting, and times it. */
export async function measureStart(build: StartBuild, name: string): Promise<StartTimes> {
  const marks = new Map<string, number>();
  const chain = await startChain({
    runner: 'noop',
    pollInterval: 5,
    build: 'dist',
    ...(build.kind === 'bundle' ? { bundles: build.dir } : {}),
    nodeArgs: ['--import', `data:text/javascript,${encodeURIComponent(PROBE)}`],
    onLog: (service, line) => {
      const at = Date.now();
      const probe = /^\{"startProbe":"(\w+)","at":([\d.]+)\}$/.exec(line);
      if (probe) marks.set(`${service} ${probe[1]}`, Number(probe[2]));
      else if (line.includes(READY[service]) && !marks.has(`${service} ready`)) marks.set(`${service} ready`, at);
    },
  });
  try {
    const job = await chain.archive.packageJob({ name, version: '1.0' });
    chain.standIn.addJob(job);
    const spawned = Date.now();
    chain.start();
    await chain.standIn.waitFor((requests) => requests.some((r) => r.request === 'job-accepted' && r['uuid'] === job.uuid), 60_000);
    // The signer and uploader are not on the hand-out's path: wait for them to be ready too.
    await waitFor('every service to log that it is ready', () => SERVICES.every((service) => marks.has(`${service} ready`)), {
      timeoutMs: 60_000,
    });
    const { requests, receivedAt } = chain.standIn;
    const accepted = requests.findIndex((r) => r.request === 'job-accepted' && r['uuid'] === job.uuid);
    let handOut = accepted;
    while (handOut >= 0 && requests[handOut]?.request !== 'job') handOut--;
    const since = (at: number | undefined) => (at ?? NaN) - spawned;
    const services = Object.fromEntries(
      SERVICES.map((service) => [
        service,
        {
          booted: since(marks.get(`${service} booted`)),
          connect: since(marks.get(`${service} connect`)),
          ready: since(marks.get(`${service} ready`)),
        },
      ]),
    ) as StartTimes['services'];
    return { services, firstRequest: since(receivedAt[0]), handOut: since(receivedAt[handOut]) };
  } finally {
    await chain.close();
  }
}

/** ms from spawning a bare `node -e 0` to its exit. */
export async function bareNodeStartMs(): Promise<number> {
  const spawned = performance.now();
  const child = spawn(process.execPath, ['-e', '0'], { stdio: 'ignore' });
  await once(child, 'exit');
  return performance.now() - spawned;
}

const ms = (value: number) => `${value.toFixed(0)} ms`;

/** The benchmark's lines: `runs` starts of each build, medians, next to a bare node's start and exit in the same run. */
export async function benchStart(builds: { label: string; build: StartBuild }[], runs: number): Promise<string[]> {
  const bare: number[] = [];
  const results = new Map<string, StartTimes[]>(builds.map(({ label }) => [label, []]));
  // Warm-up, then the builds alternate so that a change of load hits them alike.
  for (const { build } of builds) await measureStart(build, 'start-warmup');
  for (let run = 0; run < runs; run++) {
    bare.push(await bareNodeStartMs());
    for (const { label, build } of builds) results.get(label)!.push(await measureStart(build, `start${run}`));
  }
  const bareMedian = median(bare);
  const lines = [
    `start-up, the four services spawned at once with a job waiting, production flags, median of ${runs} (ms from the spawn):`,
  ];
  for (const { label } of builds) {
    const starts = results.get(label)!;
    const handOut = median(starts.map((s) => s.handOut));
    lines.push(
      `  ${label}: first hand-out ${ms(handOut)} (runs ${starts.map((s) => ms(s.handOut)).join(', ')}); ×${(handOut / bareMedian).toFixed(1)} a bare node's start and exit, ${ms(bareMedian)}; ` +
        `connector's first Lighthouse request ${ms(median(starts.map((s) => s.firstRequest)))}`,
    );
    for (const service of SERVICES) {
      const of = (key: 'booted' | 'connect' | 'ready') => ms(median(starts.map((s) => s.services[service][key])));
      lines.push(`    ${service}: node booted ${of('booted')}, modules loaded (first connection) ${of('connect')}, ready ${of('ready')}`);
    }
  }
  return lines;
}
