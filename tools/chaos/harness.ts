import { execFile } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync, readdirSync } from 'node:fs';
import { mkdtemp, readdir, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { basename, join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { promisify } from 'node:util';
import { Queue } from 'bullmq';
import { Redis } from 'ioredis';
import { parseControlFile, parseFileList, QUEUE_NAMES } from '@spark/protocol';
import { waitFor, type SourcePackageSpec } from '@spark/testing';
import { HOST_RUNNER, startChain, type Chain, type ChainOptions, type ServiceName } from '../src/chain/chain.js';
import type { StandInJob } from '@spark/testing';
import type { RecordedRequest } from '@spark/testing';

const run = promisify(execFile);

/** A seeded pseudo-random source (mulberry32), so a failing run can be replayed with `--seed`. */
/** True while a workspace of any round of job `uuid` (`<uuid>.<round>`) is in `workspacesDir`. */
export function workspaceLeft(workspacesDir: string, uuid: string): boolean {
  return existsSync(workspacesDir) && readdirSync(workspacesDir).some((name) => name.startsWith(`${uuid}.`));
}

export interface Random {
  /** A float in [0, 1). */
  next(): number;
  /** An integer in [min, max]. */
  int(min: number, max: number): number;
  pick<T>(items: readonly T[]): T;
}

/** Makes the random source of one scenario from the suite's seed. */
export function seededRandom(seed: number): Random {
  let state = seed >>> 0;
  const next = () => {
    state = (state + 0x6d2b79f5) >>> 0;
    let t = state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
  return {
    next,
    int: (min, max) => min + Math.floor(next() * (max - min + 1)),
    pick: (items) => items[Math.floor(next() * items.length)] as (typeof items)[number],
  };
}

/** What one scenario found, one row of the final table. */
export interface ScenarioResult {
  jobs: number;
  files: number;
  duplicates: number;
  lost: number;
  /** Everything that went wrong; empty when the scenario passed. */
  problems: string[];
  /** Extra figures for the log (kills made, cases run…). */
  notes: string[];
}

/** A scenario of the suite. */
export interface Scenario {
  name: string;
  /** Hard bound of the whole scenario, setup and checks included. */
  timeoutMs: number;
  run(random: Random, say: (line: string) => void): Promise<ScenarioResult>;
}

/** How a job is expected to end at Lighthouse. */
export type Ending = 'job-success' | 'job-failed';

/** A job the suite submitted, with the reference build of its `.deb`. */
export interface ChaosJob {
  job: StandInJob;
  spec: SourcePackageSpec;
  /** sha256 of the `.deb` the host runner makes from the same `.dsc`, built beside the chain (undefined when not compared; null when that build failed). */
  reference: Promise<string | null | undefined>;
}

/** A chain with its service logs kept, and the checks every scenario makes. */
export interface ChaosChain {
  chain: Chain;
  /** Service log lines, oldest first (bounded). */
  logs: string[];
  /**
   * Makes `count` jobs of distinct tiny packages and puts them on the Lighthouse
   * board; `reference: false` skips the reference build (a container build's
   * toolchain may differ from the host's).
   */
  submit(count: number, label: string, spec?: Partial<SourcePackageSpec>, options?: { reference?: boolean }): Promise<ChaosJob[]>;
  /**
   * Resolves once every job has a terminal report at Lighthouse; rejects with
   * the last log lines after `timeoutMs`. With `actAsOperator`, meanwhile
   * removes each archive file a status excerpt asks the operator to remove
   * (what an upload cut off by a crash leaves at lkwebupload); `verify` then
   * does not count the removed copy as a duplicate.
   */
  waitForEnd(jobs: readonly ChaosJob[], timeoutMs: number, options?: { actAsOperator?: boolean }): Promise<void>;
  /** Archive files removed as the operator would (`incoming/<repo>/<name>`), in order. */
  removedByOperator: string[];
  /** Lighthouse's requests about one job, across stand-in restarts. */
  requestsOf(uuid: string): RecordedRequest[];
  /** Job counts per queue state in the chain's Redis. */
  queueCounts(): Promise<Record<string, Record<string, number>>>;
  /** Checks every job (reports, uploaded files, workspace) and the queues; fills `result`. */
  verify(jobs: readonly ChaosJob[], ending: Ending, result: ScenarioResult, allowedFailed?: Partial<Record<string, number>>): Promise<void>;
  /** Makes sure each service runs (restarting the ones that died) and reports those that had to be restarted. */
  ensureRunning(): ServiceName[];
  close(): Promise<void>;
}

let packageCounter = 0;

/** Starts a chain for one scenario (the four services not yet started). */
export async function chaosChain(options: ChainOptions = {}): Promise<ChaosChain> {
  const logs: string[] = [];
  const chain = await startChain({
    appendOnly: true,
    ...options,
    onLog: (service, line) => {
      logs.push(`${service}: ${line}`);
      // CHAOS_ECHO=1 prints every service log line as it comes (for a scenario that fails without saying why).
      if (process.env['CHAOS_ECHO'] === '1') process.stdout.write(`${service}: ${line}\n`);
      if (logs.length > 20_000) logs.splice(0, 5_000);
      options.onLog?.(service, line);
    },
  });
  const referenceDir = await mkdtemp(join(tmpdir(), 'spark-chaos-ref-'));
  const references: Promise<unknown>[] = [];
  let referenceChain: Promise<unknown> = Promise.resolve();

  const requestsOf = (uuid: string) => chain.lighthouseRequests().filter((request) => request['uuid'] === uuid);

  // The uploader's excerpt for a file the archive refuses after a cut-off PUT says `Remove incoming/<repo>/<name> on the archive`.
  const removedByOperator: string[] = [];
  // Per file name: the copies stored (PUT answered 201) before the operator removed one; they no longer count.
  const removedCopies = new Map<string, number>();
  const storedPuts = (name: string) =>
    chain.receiver.requests.filter(
      (request) => request.method === 'PUT' && request.status === 201 && decodeURIComponent(request.url.split('/').pop() ?? '') === name,
    ).length;
  const handledExcerpts = new Set<string>();
  const actAsOperator = async (uuids: ReadonlySet<string>) => {
    for (const request of chain.lighthouseRequests()) {
      if (request.request !== 'job-status' || !uuids.has(String(request['uuid']))) continue;
      const excerpt = typeof request['log_excerpt'] === 'string' ? request['log_excerpt'] : '';
      if (handledExcerpts.has(excerpt)) continue;
      handledExcerpts.add(excerpt);
      for (const match of excerpt.matchAll(/Remove (incoming\/([^/\s]+)\/([^/\s]+)) on the archive/g)) {
        const [, archivePath = '', repo = '', name = ''] = match;
        const path = join(chain.uploadsDir, repo, name);
        if (!existsSync(path)) continue;
        await rm(path);
        removedByOperator.push(archivePath);
        removedCopies.set(name, (removedCopies.get(name) ?? 0) + storedPuts(name));
      }
    }
  };

  const referenceBuild = (dsc: string, name: string): Promise<string | null> => {
    // One reference build at a time: they compete with the chain for the two cores.
    const result = referenceChain.then(async () => {
      const out = join(referenceDir, name);
      await run(HOST_RUNNER, ['build', `--results-dir=${out}`, dsc], { env: { ...process.env, TMPDIR: referenceDir } });
      const deb = (await readdir(out)).find((file) => file.endsWith('.deb'));
      return deb ? sha256(await readFile(join(out, deb))) : null;
    });
    referenceChain = result.catch(() => undefined);
    references.push(referenceChain);
    return result.catch(() => null);
  };

  const queueCounts = async () => {
    const connection = new Redis(chain.redis.url, { maxRetriesPerRequest: 3, lazyConnect: true });
    try {
      await connection.connect();
      const counts: Record<string, Record<string, number>> = {};
      for (const name of QUEUE_NAMES) {
        const queue = new Queue(name, { connection, prefix: chain.config.queuePrefix });
        counts[name] = await queue.getJobCounts('waiting', 'active', 'delayed', 'failed', 'paused', 'prioritized', 'waiting-children');
        await queue.close();
      }
      return counts;
    } finally {
      connection.disconnect();
    }
  };

  return {
    chain,
    logs,
    removedByOperator,
    requestsOf,
    queueCounts,
    async submit(count, label, spec = {}, options = {}) {
      const jobs: ChaosJob[] = [];
      for (let i = 0; i < count; i++) {
        const full: SourcePackageSpec = { name: `chaos-${label}-${++packageCounter}`, version: `1.${i}`, ...spec };
        const job = await chain.archive.packageJob(full);
        const dsc = join(chain.dir, 'archive', basename(String((job['data'] as { dsc_url: string }).dsc_url)));
        jobs.push({ job, spec: full, reference: options.reference === false ? Promise.resolve(undefined) : referenceBuild(dsc, job.uuid) });
        chain.standIn.addJob(job);
      }
      return jobs;
    },
    async waitForEnd(jobs, timeoutMs, options = {}) {
      const ended = (job: ChaosJob) =>
        requestsOf(job.job.uuid).some((request) => request.request === 'job-success' || request.request === 'job-failed');
      const uuids = new Set(jobs.map((job) => job.job.uuid));
      await waitFor(
        `a terminal report of each of ${jobs.length} job(s)`,
        async () => {
          if (jobs.every(ended)) return true;
          if (options.actAsOperator) await actAsOperator(uuids);
          return false;
        },
        {
          timeoutMs,
          intervalMs: 100,
          detail: () =>
            `none yet for ${jobs
              .filter((job) => !ended(job))
              .map((job) => job.job.uuid)
              .join(', ')}\n${logs.slice(-30).join('\n')}`,
        },
      );
    },
    async verify(jobs, ending, result, allowedFailed = {}) {
      await Promise.all(references);
      const stored = new Map<string, number>();
      for (const request of chain.receiver.requests) {
        if (request.method === 'PUT' && request.status === 201) {
          const name = decodeURIComponent(request.url.split('/').pop() ?? '');
          stored.set(name, (stored.get(name) ?? 0) + 1);
        }
      }
      // Copies the operator removed do not count: the archive holds only what was stored after.
      for (const [name, copies] of removedCopies) stored.set(name, (stored.get(name) ?? 0) - copies);
      result.jobs += jobs.length;
      for (const { job, reference } of jobs) {
        const uuid = job.uuid;
        const problems: string[] = [];
        const requests = requestsOf(uuid);
        const events = requests.map((request) => String(request.request));
        const accepted = events.filter((event) => event === 'job-accepted').length;
        const terminal = events.filter((event) => event === 'job-success' || event === 'job-failed' || event === 'job-rejected');
        if (terminal.length === 0) result.lost += 1;
        result.duplicates += Math.max(0, accepted - 1) + Math.max(0, terminal.length - 1);
        if (accepted !== 1 || terminal.length !== 1 || terminal[0] !== ending) {
          problems.push(
            `reports ${events.filter((event) => event !== 'job-status').join(',')} (expected job-accepted once, then ${ending} once)`,
          );
        }
        const first = events.indexOf('job-accepted');
        const last = events.findIndex((event) => event === ending);
        if (events.some((event, index) => event === 'job-status' && (index < first || index > last))) {
          problems.push(`a job-status outside accepted…${ending}: ${events.join(',')}`);
        }
        // The uploader removes the workspace just after queueing the final report.
        if (!(await settles(() => !workspaceLeft(chain.config.workspacesDir, uuid)))) problems.push('workspace left behind');
        const files = await checkUploads(chain, job, ending, stored, await reference, problems);
        result.files += files.count;
        result.duplicates += files.duplicates;
        if (files.missing > 0 && terminal.length > 0) result.lost += 1;
        result.problems.push(...problems.map((problem) => `${uuid}: ${problem}`));
      }
      const stuck = (counts: Record<string, Record<string, number>>) =>
        Object.entries(counts).flatMap(([queue, states]) =>
          Object.entries(states)
            .filter(([state, count]) => count !== (state === 'failed' ? (allowedFailed[queue] ?? 0) : 0))
            .map(
              ([state, count]) => `queue ${queue}: ${count} ${state} (expected ${state === 'failed' ? (allowedFailed[queue] ?? 0) : 0})`,
            ),
        );
      // A last report may still be on its way to completed.
      let left = stuck(await queueCounts());
      for (let tries = 0; left.length > 0 && tries < 25; tries++) {
        await sleep(200);
        left = stuck(await queueCounts());
      }
      result.problems.push(...left);
    },
    ensureRunning() {
      const restarted = (['connector', 'builder', 'signer', 'uploader'] as const).filter((name) => !chain.running(name));
      if (restarted.length > 0) chain.start(...restarted);
      return restarted;
    },
    async close() {
      await chain.close();
      await rm(referenceDir, { recursive: true, force: true });
    },
  };
}

/** True once `condition` holds, polling for up to 5 s. */
async function settles(condition: () => boolean): Promise<boolean> {
  for (let tries = 0; tries < 50; tries++) {
    if (condition()) return true;
    await sleep(100);
  }
  return condition();
}

function sha256(data: Buffer | string): string {
  return createHash('sha256').update(data).digest('hex');
}

/**
 * The job's files at the receiver: its `.dud` and the files it lists, and on
 * success its `.changes` and the files that lists; each stored by exactly one
 * PUT, matching the SHA-256 its control file gives, control files and
 * `.buildinfo` verifying with gpgv, the `.deb` identical to the reference build.
 */
async function checkUploads(
  chain: Chain,
  job: StandInJob,
  ending: Ending,
  stored: ReadonlyMap<string, number>,
  referenceDeb: string | null | undefined,
  problems: string[],
): Promise<{ count: number; duplicates: number; missing: number }> {
  const dir = join(chain.uploadsDir, 'master');
  let count = 0;
  let duplicates = 0;
  let missing = 0;
  const data = job['data'] as { package_name: string; package_version: string };
  const controls = [`${job.uuid}.dud`];
  if (ending === 'job-success') controls.push(`${data.package_name}_${data.package_version}_amd64.changes`);
  for (const control of controls) {
    const names = [control];
    let text: string;
    try {
      text = await readFile(join(dir, control), 'utf8');
    } catch {
      problems.push(`${control} not uploaded`);
      missing += 1;
      continue;
    }
    const paragraph = parseControlFile(text).paragraphs[0];
    for (const entry of parseFileList(paragraph?.get('Checksums-Sha256'))) {
      names.push(entry.name);
      const path = join(dir, entry.name);
      if (!existsSync(path)) continue;
      const digest = sha256(await readFile(path));
      if (digest !== entry.digest) problems.push(`${entry.name}: stored SHA-256 ${digest}, ${control} says ${entry.digest}`);
      if (entry.name.endsWith('.deb') && typeof referenceDeb === 'string' && digest !== referenceDeb) {
        problems.push(`${entry.name}: SHA-256 ${digest} differs from the reference build's ${referenceDeb}`);
      }
      if (entry.name.endsWith('.deb') && referenceDeb === null) problems.push(`${entry.name}: the reference build failed`);
    }
    for (const name of names) {
      const puts = stored.get(name) ?? 0;
      if (puts === 0) {
        problems.push(`${name} not stored`);
        missing += 1;
      } else {
        count += 1;
        if (puts > 1) {
          problems.push(`${name} stored ${puts} times`);
          duplicates += puts - 1;
        }
      }
      if (/\.(changes|dud|buildinfo)$/.test(name) && puts > 0) {
        await run('gpgv', ['--keyring', chain.key.keyring, join(dir, name)]).catch((error: unknown) =>
          problems.push(`${name}: gpgv refused the signature: ${(error as { stderr?: string }).stderr ?? String(error)}`),
        );
      }
    }
  }
  return { count, duplicates, missing };
}

/** A fresh result row. */
export function emptyResult(): ScenarioResult {
  return { jobs: 0, files: 0, duplicates: 0, lost: 0, problems: [], notes: [] };
}

/**
 * Waits for Lighthouse to get `job-rejected` for `uuid` `times` times (it
 * hands a rejected job out again), then takes the job off the board (as an
 * operator would), so it is not handed out again and again; returns how many
 * rejections arrived by then.
 */
export async function retireWhenRejected(chaos: ChaosChain, uuid: string, timeoutMs: number, times = 1): Promise<number> {
  const rejected = () => chaos.requestsOf(uuid).filter((request) => request.request === 'job-rejected').length;
  await waitFor(`job-rejected ${times} time(s) for ${uuid}`, () => rejected() >= times, { timeoutMs });
  // Retire it for good: a rejection still on its way (one handed straight back within its cool-down)
  // must not put it back to WAITING, as it would at Lighthouse.
  chaos.chain.standIn.board.remove(uuid);
  return rejected();
}
