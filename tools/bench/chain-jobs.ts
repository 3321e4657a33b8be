import { mkdir, readdir, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { makeSourcePackage, timeCommand, type SourcePackageSpec } from '@spark/testing';
import { HOST_RUNNER, type Chain } from '../src/chain/chain.js';
import type { StandInJob } from '@spark/testing';

/** Tiny packages built once with the host runner, for the no-op runner to hand out again. */
export interface Prebuilt {
  /** The directory to export as `SPARK_PREBUILT_DIR`. */
  dir: string;
  specs: SourcePackageSpec[];
  /** Wall time of each host-runner build (dpkg-buildpackage of the tiniest package), in s. */
  buildSeconds: number[];
}

/**
 * Builds `count` distinct hello-world packages (distinct names, so one chain
 * uploads each once) with tools/host-runner, one after the other, into
 * `<dir>/<name>_<version>/` where tools/host-runner/noop-debspawn looks.
 */
export async function prebuild(dir: string, count: number): Promise<Prebuilt> {
  const sources = join(dir, 'sources');
  await mkdir(sources, { recursive: true });
  const specs = Array.from({ length: count }, (_, i) => ({ name: `bench${i}`, version: '1.0' }));
  const buildSeconds: number[] = [];
  for (const spec of specs) {
    const pkg = await makeSourcePackage(sources, spec);
    const build = await timeCommand(HOST_RUNNER, ['build', `--results-dir=${join(dir, `${spec.name}_${spec.version}`)}`, pkg.dsc]);
    buildSeconds.push(build.seconds);
  }
  return { dir, specs, buildSeconds };
}

/** The Lighthouse jobs of `specs`, served by the chain's package archive (not yet on the board). */
export async function chainJobs(chain: Chain, specs: readonly SourcePackageSpec[]): Promise<StandInJob[]> {
  const jobs: StandInJob[] = [];
  for (const spec of specs) jobs.push(await chain.archive.packageJob(spec));
  return jobs;
}

/** Index of the first request after `from` that satisfies `predicate`, or -1. */
export function requestIndex(chain: Chain, from: number, predicate: (request: Record<string, unknown>) => boolean): number {
  const { requests } = chain.standIn;
  for (let i = from; i < requests.length; i++) if (predicate(requests[i] ?? {})) return i;
  return -1;
}

/** Epoch ms on the clock the stand-in stamps requests with. */
export const now = (): number => performance.timeOrigin + performance.now();

/** Resolves once the chain's connector has asked for a job (its builders are up). */
export async function untilPolling(chain: Chain): Promise<void> {
  await chain.standIn.waitFor(
    (requests) => requests.some((r) => r.request === 'job' && r['machine_name'] === chain.config.machineName),
    60_000,
  );
}

/** Empties the receiver's repository, so the next job may upload the same file names again. */
export async function clearUploads(chain: Chain): Promise<void> {
  const repo = join(chain.uploadsDir, 'master');
  for (const name of await readdir(repo).catch(() => [])) await rm(join(repo, name), { force: true });
}

/** Waits for a job's terminal report and returns its index; throws when the job did not succeed. */
export async function untilSuccess(chain: Chain, uuid: string, from: number): Promise<number> {
  const terminal = (r: Record<string, unknown>) =>
    r['uuid'] === uuid && ['job-success', 'job-failed', 'job-rejected'].includes(String(r['request']));
  await chain.standIn.waitFor((requests) => requests.slice(from).some(terminal), 120_000);
  const index = requestIndex(chain, from, terminal);
  const request = chain.standIn.requests[index];
  if (request?.request !== 'job-success') throw new Error(`job ${uuid} ended with ${String(request?.request)}`);
  return index;
}
