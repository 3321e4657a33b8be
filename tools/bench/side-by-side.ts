/*
 * Side by side with laniakea-spark (docs/benchmarks.md): the same
 * Lighthouse stand-in, package archive, upload receiver, jobs and runner (the
 * host runner, tools/host-runner/debspawn, first on PATH for both) — first
 * our four services under `spark run`, then laniakea-spark from the source
 * tree in LANIAKEA_SPARK_SRC — and the figures for both, with ratios.
 * Run: npm run bench (or, in tools/, npm run bench:side-by-side). About 7
 * minutes with laniakea-spark (its 30 s poll pause sets the pace);
 * SIDE_BY_SIDE_QUICK=1 takes one sample of each and idles 3 s, to try it out.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { rmSync } from 'node:fs';
import { chmod, mkdir, readFile, readdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { setTimeout as sleep } from 'node:timers/promises';
import { machineDescription, median, type RecordedRequest, type SourcePackageSpec, type StandInJob } from '@spark/testing';
import { HOST_RUNNER, startChain, type Chain, type ServiceName } from '../src/chain/chain.js';
import { findLaniakeaSpark, startLaniakeaSpark } from './laniakea-spark.js';
import { now } from './chain-jobs.js';
import { buildBundles, environmentAsUnits } from './bundles.js';
import { nodeFlags } from '@spark/config';

/** What operators run: the Debian package's bundles (bundles.ts), the `spark` command's running the services' beside it. */
const bundles = await buildBundles();
const unitsEnvironment = environmentAsUnits();
if (unitsEnvironment) process.stdout.write(`${unitsEnvironment}\n`);
process.on('exit', () => rmSync(bundles.dir, { recursive: true, force: true }));
/** Our default `PollInterval` and laniakea-spark's fixed pause after an empty job request (spark/worker.py), in s. */
const OUR_POLL_INTERVAL = 5;
const SPARK_POLL_INTERVAL = 30;
/** Jobs of the makespan set; each build sleeps this long after compiling, so builds are long enough to overlap with uploads. */
const QUICK = process.env['SIDE_BY_SIDE_QUICK'] === '1';
const MAKESPAN_JOBS = QUICK ? 2 : 8;
const BUILD_SLEEP_SECONDS = 3;
/** When in a poll interval the pickup samples add their job: at these fractions after an empty job request. */
const PICKUP_PHASES = QUICK ? [0.05] : [0.25, 0.5, 0.75];
const IDLE_SECONDS = QUICK ? 3 : 30;
/** Each upload PUT is answered this late, for both: with six PUTs per job (both send six), about as long as a makespan build. */
const PUT_DELAY_MS = 600;
/** Between starting one side of our services and the other, in the started-on-their-own runs. */
const GAP_SECONDS = 3;

type WorkerKind = 'ours' | 'laniakea-spark';

/** What one worker did, in ms unless named otherwise. */
interface WorkerFigures {
  firstHandOut: number;
  /** Ours: hand-out after the later of "connector started"/"builder started" log lines. */
  firstHandOutFromReady: number | null;
  pickup: number[];
  /** The runner's exit → the next hand-out, while jobs wait. */
  runnerEndToHandOut: number[];
  /** The job's last report (job-success/job-failed) → the next hand-out, while jobs wait (negative: handed out before). */
  reportToHandOut: number[];
  makespan: number;
  idleRssKiB: number;
  idleProcesses: number;
  idleRequestsPerMinute: number;
  /** Hand-out → last report minus the runner's own time, uploads undelayed. */
  overhead: number[];
  putsPerJob: number;
  /** Median and total runner time of the makespan set. */
  makespanBuildMs: number;
  makespanRunnerTotalMs: number;
  /** Hand-out → job-accepted of the pickup jobs. */
  handOutToAccepted: number[];
  runnerMs: number[];
  /** The final report of every job (job-success / job-failed). */
  results: string[];
}

/** One run of the runner, as the timing wrapper logged it. */
interface RunnerRun {
  dsc: string;
  start: number;
  end: number;
}

/** A `debspawn` that runs the host runner and logs each build's start and end (epoch ms) to `<dir>/runs.log`. */
async function timedRunner(dir: string): Promise<{ dir: string; runs: () => Promise<RunnerRun[]> }> {
  await mkdir(dir, { recursive: true });
  const log = join(dir, 'runs.log');
  const script = join(dir, 'debspawn');
  await writeFile(
    script,
    `#!/bin/sh
# The host runner, timed: appends "<start ms> <end ms> <last argument>" of each build to runs.log.
[ "\${1:-}" = build ] || exec '${HOST_RUNNER}' "$@"
start=$(date +%s%3N)
status=0
'${HOST_RUNNER}' "$@" || status=$?
for last in "$@"; do :; done
echo "$start $(date +%s%3N) $(basename "$last")" >> '${log}'
exit $status
`,
  );
  await chmod(script, 0o755);
  return {
    dir,
    async runs() {
      const text = await readFile(log, 'utf8').catch(() => '');
      return text
        .split('\n')
        .filter(Boolean)
        .map((line) => {
          const [start, end, dsc] = line.split(' ');
          return { start: Number(start), end: Number(end), dsc: dsc ?? '' };
        });
    },
  };
}

/** Sum of VmRSS (KiB) over `pid` and all its descendants, and how many processes that is. */
async function treeRssKiB(pid: number): Promise<{ kib: number; processes: number }> {
  const parents = new Map<number, number>();
  for (const entry of await readdir('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    const stat = await readFile(`/proc/${entry}/stat`, 'utf8').catch(() => '');
    // Field 4 (ppid) comes after the command name, which is in parentheses and may hold spaces.
    const ppid = Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]);
    if (stat) parents.set(Number(entry), ppid);
  }
  const tree = new Set([pid]);
  for (let grew = true; grew;) {
    grew = false;
    for (const [child, parent] of parents) {
      if (tree.has(parent) && !tree.has(child)) {
        tree.add(child);
        grew = true;
      }
    }
  }
  let kib = 0;
  for (const member of tree) {
    const status = await readFile(`/proc/${member}/status`, 'utf8').catch(() => '');
    kib += Number(/^VmRSS:\s+(\d+)/m.exec(status)?.[1] ?? 0);
  }
  return { kib, processes: tree.size };
}

const isJobRequest = (r: RecordedRequest) => r.request === 'job';
const isFinal = (uuid: string) => (r: RecordedRequest) => r['uuid'] === uuid && (r.request === 'job-success' || r.request === 'job-failed');

/** Index of the hand-out of `uuid`: the last job request before its job-accepted. */
function handOutIndex(chain: Chain, uuid: string): number {
  const { requests } = chain.standIn;
  const accepted = requests.findIndex((r) => r.request === 'job-accepted' && r['uuid'] === uuid);
  for (let i = accepted; i >= 0; i--) if (isJobRequest(requests[i] ?? {})) return i;
  throw new Error(`no hand-out of ${uuid} before its job-accepted`);
}

async function untilFinal(chain: Chain, uuid: string, timeoutMs = 300_000): Promise<number> {
  await chain.standIn.waitFor((requests) => requests.some(isFinal(uuid)), timeoutMs);
  return chain.standIn.requests.findIndex(isFinal(uuid));
}

/** Resolves with the epoch ms at which a line holding `text` arrived from any of `streams`. */
function lineSeen(streams: NodeJS.ReadableStream[], text: string): Promise<number> {
  return new Promise((resolve) => {
    for (const stream of streams) {
      createInterface({ input: stream, crlfDelay: Infinity }).on('line', (line) => {
        if (line.includes(text)) resolve(now());
      });
    }
  });
}

/** A started worker: the pid whose process tree is the whole worker, when its connector and builder said they started, and how to stop it. */
interface RunningWorker {
  pid: number;
  /** Epoch ms of the later of "connector started" / "builder started" (ours only). */
  ready: Promise<number> | null;
  stop(): Promise<void>;
}

/** Stops a child with SIGTERM (SIGKILL after a minute) and waits for it. */
async function stopChild(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;
  const exited = once(child, 'exit');
  child.kill('SIGTERM');
  const timer = setTimeout(() => child.kill('SIGKILL'), 60_000);
  await exited;
  clearTimeout(timer);
}

/** Starts one worker against `chain`: ours as `spark run` (the built CLI), or laniakea-spark. */
async function startWorker(kind: WorkerKind, chain: Chain, runnerDir: string, sparkSrc: string): Promise<RunningWorker> {
  if (kind === 'laniakea-spark') return { ...(await startLaniakeaSpark(chain, { src: sparkSrc, runnerDir })), ready: null };
  // As its launcher starts it: with the `spark` command's flags (each service gets its own from `spark run`).
  const child: ChildProcess = spawn(process.execPath, [...nodeFlags('cli'), bundles.cli, 'run', '--config', chain.configFile], {
    stdio: ['ignore', 'pipe', 'pipe'],
    env: { ...process.env, PATH: `${runnerDir}:${process.env['PATH'] ?? ''}`, SPARK_LOG_LEVEL: 'info' },
  });
  const streams = [child.stdout!, child.stderr!];
  const ready = Promise.all([lineSeen(streams, 'connector started'), lineSeen(streams, 'builder started')]).then((t) => Math.max(...t));
  await once(child, 'spawn');
  return { pid: child.pid ?? 0, ready, stop: () => stopChild(child) };
}

/** Starts one of our services on its own from its bundle with its flags, as its systemd unit's launcher does. */
function startService(chain: Chain, name: ServiceName, runnerDir: string): { child: ChildProcess; started: Promise<number> } {
  const entry = join(bundles.dir, 'node_modules/@spark', name, 'dist/main.js');
  const child = spawn(process.execPath, [...nodeFlags(name), entry, '--config', chain.configFile], {
    stdio: ['ignore', 'pipe', 'pipe'],
    env: { ...process.env, PATH: `${runnerDir}:${process.env['PATH'] ?? ''}`, SPARK_LOG_LEVEL: 'info', SPARK_BUILDER_ID: 'bench@1' },
  });
  return { child, started: lineSeen([child.stdout, child.stderr], `${name} started`) };
}

/**
 * First hand-out with a job waiting when our services are started on their
 * own, one side `GAP_SECONDS` before the other: `connector-first` starts the
 * connector, then builder, signer and uploader; `builder-first` the other way
 * round. Returns ms from the later side's spawn, and from its "started" log line.
 */
async function firstHandOutOnTheirOwn(order: 'connector-first' | 'builder-first'): Promise<{ fromSpawn: number; fromStarted: number }> {
  const chain = await startChain({ runner: 'debspawn', pollInterval: OUR_POLL_INTERVAL });
  const children: ChildProcess[] = [];
  try {
    const runner = await timedRunner(join(chain.dir, 'runner'));
    const job = await chain.archive.packageJob({ name: `alone-${order}`, version: '1.0' });
    chain.standIn.addJob(job);
    const early: ServiceName[] = order === 'connector-first' ? ['connector'] : ['builder', 'signer', 'uploader'];
    const late: ServiceName[] = order === 'connector-first' ? ['builder', 'signer', 'uploader'] : ['connector'];
    for (const name of early) children.push(startService(chain, name, runner.dir).child);
    await sleep(GAP_SECONDS * 1000);
    const spawned = now();
    const lateStarts = late.map((name) => startService(chain, name, runner.dir));
    children.push(...lateStarts.map((s) => s.child));
    const lateName = order === 'connector-first' ? 'builder' : 'connector';
    const started = lateStarts[late.indexOf(lateName)]?.started ?? Promise.resolve(NaN);
    await untilFinal(chain, job.uuid, 120_000);
    const handOut = chain.standIn.receivedAt[handOutIndex(chain, job.uuid)] ?? NaN;
    return { fromSpawn: handOut - spawned, fromStarted: handOut - (await started) };
  } finally {
    await Promise.all(children.map(stopChild));
    await chain.close();
  }
}

/** Measures one worker on a chain of its own (same settings for both). */
async function measure(kind: WorkerKind, sparkSrc: string, putDelayMs: number): Promise<WorkerFigures> {
  const chain = await startChain({ runner: 'debspawn', pollInterval: OUR_POLL_INTERVAL });
  let worker: RunningWorker | null = null;
  try {
    const runner = await timedRunner(join(chain.dir, 'runner'));
    const prefix = kind === 'ours' ? 'ours' : 'lks';
    let serial = 0;
    const job = (buildSleep = 0): Promise<StandInJob> => {
      const spec: SourcePackageSpec = {
        name: `${prefix}${serial++}`,
        version: '1.0',
        ...(buildSleep > 0 ? { buildCommands: [`sleep ${buildSleep}`] } : {}),
      };
      return chain.archive.packageJob(spec);
    };
    const runOf = async (entry: StandInJob) =>
      (await runner.runs()).find((r) => r.dsc === `${(entry['data'] as { package_name: string }).package_name}_1.0.dsc`);
    const interval = (kind === 'ours' ? OUR_POLL_INTERVAL : SPARK_POLL_INTERVAL) * 1000;
    const at = (index: number) => chain.standIn.receivedAt[index] ?? NaN;
    const results: string[] = [];
    const final = async (entry: StandInJob, timeoutMs?: number) => {
      const index = await untilFinal(chain, entry.uuid, timeoutMs);
      results.push(String(chain.standIn.requests[index]?.request));
      return index;
    };

    // First hand-out after start, a job waiting.
    const first = await job();
    chain.standIn.addJob(first);
    const started = now();
    worker = await startWorker(kind, chain, runner.dir, sparkSrc);
    await final(first, 120_000);
    const firstAt = at(handOutIndex(chain, first.uuid));
    const firstHandOut = firstAt - started;
    const firstHandOutFromReady = worker.ready ? firstAt - (await worker.ready) : null;

    // Idle: the whole worker's RSS after IDLE_SECONDS without work, and its request rate meanwhile.
    const idleFrom = now();
    const idleStartIndex = chain.standIn.requests.length;
    await sleep(IDLE_SECONDS * 1000);
    const rss = await treeRssKiB(worker.pid);
    const idleRequestsPerMinute = ((chain.standIn.requests.length - idleStartIndex) / (now() - idleFrom)) * 60_000;

    // Pickup at the default poll settings: a job added at fixed phases after an empty job request.
    // Per-job overhead from the same jobs: hand-out → final report minus the runner's own time.
    const pickup: number[] = [];
    const overhead: number[] = [];
    const runnerMs: number[] = [];
    const handOutToAccepted: number[] = [];
    let puts = 0;
    for (const phase of PICKUP_PHASES) {
      const from = chain.standIn.requests.length;
      await chain.standIn.waitFor((requests) => requests.slice(from).some(isJobRequest), interval + 60_000);
      await sleep(phase * interval);
      const next = await job();
      const putsBefore = chain.receiver.requests.length;
      const added = now();
      chain.standIn.addJob(next);
      const done = await final(next);
      const handOut = handOutIndex(chain, next.uuid);
      pickup.push(at(handOut) - added);
      handOutToAccepted.push(
        at(chain.standIn.requests.findIndex((r) => r.request === 'job-accepted' && r['uuid'] === next.uuid)) - at(handOut),
      );
      const run = await runOf(next);
      runnerMs.push(run ? run.end - run.start : NaN);
      overhead.push(at(done) - at(handOut) - (run ? run.end - run.start : NaN));
      // Our uploader sends the build log after the final report; let it land before counting.
      await sleep(2000);
      puts = chain.receiver.requests.length - putsBefore;
    }

    // Makespan: a set of jobs waiting, each PUT answered putDelayMs late (uploads as long as builds).
    const runsSoFar = (await runner.runs()).length;
    chain.receiver.options.answerDelayMs = putDelayMs;
    const set: StandInJob[] = [];
    for (let i = 0; i < MAKESPAN_JOBS; i++) set.push(await job(BUILD_SLEEP_SECONDS));
    for (const entry of set) chain.standIn.addJob(entry);
    const finals: number[] = [];
    for (const entry of set) finals.push(await final(entry, 600_000));
    const handOuts = set.map((entry) => at(handOutIndex(chain, entry.uuid))).sort((a, b) => a - b);
    const finalTimes = finals.map(at).sort((a, b) => a - b);
    const makespan = Math.max(...finalTimes) - (handOuts[0] ?? NaN);
    const runs = (await runner.runs()).slice(runsSoFar).sort((a, b) => a.end - b.end);

    return {
      firstHandOut,
      firstHandOutFromReady,
      pickup,
      runnerEndToHandOut: handOuts.slice(1).map((handOut, i) => handOut - (runs[i]?.end ?? NaN)),
      reportToHandOut: handOuts.slice(1).map((handOut, i) => handOut - (finalTimes[i] ?? NaN)),
      makespan,
      makespanBuildMs: median(runs.map((r) => r.end - r.start)),
      makespanRunnerTotalMs: runs.reduce((sum, r) => sum + r.end - r.start, 0),
      handOutToAccepted,
      idleRssKiB: rss.kib,
      idleProcesses: rss.processes,
      idleRequestsPerMinute,
      overhead,
      runnerMs,
      putsPerJob: puts,
      results,
    };
  } finally {
    await worker?.stop();
    await chain.close();
  }
}

const sec = (ms: number) => `${(ms / 1000).toFixed(Math.abs(ms) < 1000 ? 3 : 2)} s`;
const range = (values: readonly number[]) =>
  values.length === 0
    ? 'none'
    : `median ${sec(median(values))} (${sec(Math.min(...values))} … ${sec(Math.max(...values))}, n=${values.length})`;
const times = (ours: number, theirs: number) => `×${(ours / theirs).toFixed(2)}`;
const mib = (kib: number) => `${(kib / 1024).toFixed(0)} MiB`;

const out = (line: string) => process.stdout.write(`${line}\n`);
out(`side by side with laniakea-spark; ${await machineDescription()}`);
out(
  `both on the same Lighthouse stand-in, archive and upload receiver, MaxJobs 1, runner: the host runner (tools/host-runner/debspawn, dpkg-buildpackage on the host) as \`debspawn\` first on PATH; ours under \`spark run\` (the Debian package's bundles, with their flags), PollInterval ${OUR_POLL_INTERVAL} s (default)`,
);
const source = await findLaniakeaSpark();
const ours = await measure('ours', '', PUT_DELAY_MS);
const alone = {
  connectorFirst: await firstHandOutOnTheirOwn('connector-first'),
  builderFirst: await firstHandOutOnTheirOwn('builder-first'),
};
const theirs = 'skipped' in source ? null : await measure('laniakea-spark', source.src, PUT_DELAY_MS);
if ('skipped' in source) out(`laniakea-spark comparison skipped: ${source.skipped}`);
else out(`laniakea-spark from ${source.src}`);

const rows: [string, (f: WorkerFigures) => string, ((o: WorkerFigures, t: WorkerFigures) => string)?][] = [
  [
    'first hand-out after start (a job waiting), from spawning the worker',
    (f) =>
      sec(f.firstHandOut) +
      (f.firstHandOutFromReady !== null ? `; ${sec(f.firstHandOutFromReady)} after the connector and builder logged "started"` : ''),
    (o, t) => times(o.firstHandOut, t.firstHandOut),
  ],
  [
    `pickup latency at the default poll settings (job added ${PICKUP_PHASES.map((p) => `${p * 100}%`).join('/')} into the poll pause)`,
    (f) => range(f.pickup),
    (o, t) => times(median(o.pickup), median(t.pickup)),
  ],
  [
    "a job's runner exit → next hand-out (jobs waiting; the slot frees)",
    (f) => range(f.runnerEndToHandOut),
    (o, t) => times(median(o.runnerEndToHandOut), median(t.runnerEndToHandOut)),
  ],
  ["a job's last report (job-success/failed) → next hand-out (negative: handed out before that report)", (f) => range(f.reportToHandOut)],
  [
    `makespan of ${MAKESPAN_JOBS} jobs waiting, builds of ~${BUILD_SLEEP_SECONDS} s + compile, every PUT answered ${PUT_DELAY_MS} ms late`,
    (f) =>
      `${sec(f.makespan)} (runner median ${sec(f.makespanBuildMs)} per build, ${sec(f.makespanRunnerTotalMs)} in all; makespan − runner time ${sec(f.makespan - f.makespanRunnerTotalMs)}; ${f.putsPerJob} PUTs per job)`,
    (o, t) => {
      // The builds ran minutes apart on a shared machine and took different times; the second ratio
      // gives both the same runner time (the mean of the two), keeping each side's own remainder.
      const runner = (o.makespanRunnerTotalMs + t.makespanRunnerTotalMs) / 2;
      const equal = (f: WorkerFigures) => f.makespan - f.makespanRunnerTotalMs + runner;
      return `${times(o.makespan, t.makespan)} (goal ≤ ×0.6); with equal runner time (${sec(runner)}): ${times(equal(o), equal(t))}`;
    },
  ],
  [
    `idle RSS of the whole worker after ${IDLE_SECONDS} s idle`,
    (f) =>
      `${mib(f.idleRssKiB)} in ${f.idleProcesses} process(es); ${f.idleRequestsPerMinute.toFixed(1)} Lighthouse requests/min meanwhile`,
    (o, t) => times(o.idleRssKiB, t.idleRssKiB),
  ],
  ['hand-out → job-accepted', (f) => range(f.handOutToAccepted), (o, t) => times(median(o.handOutToAccepted), median(t.handOutToAccepted))],
  [
    'per-job overhead (hand-out → final report minus the runner’s own time, uploads not delayed)',
    (f) => `${range(f.overhead)}; runner ${range(f.runnerMs)}`,
    (o, t) => times(median(o.overhead), median(t.overhead)),
  ],
];
for (const [label, show, compare] of rows) {
  out(`${label}:`);
  out(`  ours:           ${show(ours)}`);
  out(`  laniakea-spark: ${theirs ? show(theirs) : 'skipped'}`);
  if (theirs && compare) out(`  ours / laniakea-spark: ${compare(ours, theirs)}`);
}
out(
  `first hand-out with our services started on their own (bundles), a job waiting, the other side started ${GAP_SECONDS} s earlier: ` +
    `connector first → ${sec(alone.connectorFirst.fromSpawn)} after spawning the builder (${sec(alone.connectorFirst.fromStarted)} after it logged "builder started"); ` +
    `builder first → ${sec(alone.builderFirst.fromSpawn)} after spawning the connector (${sec(alone.builderFirst.fromStarted)} after it logged "connector started")`,
);
out(
  `job results: ours ${[...new Set(ours.results)].join('/')}${theirs ? `; laniakea-spark ${[...new Set(theirs.results)].join('/')}` : ''}`,
);
