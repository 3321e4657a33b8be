/*
 * What the compromised builder of npm run test:hostile writes: the rounds it
 * hands the signer (one scenario per package name) and the reports it floods
 * its report queue with. as-builder.ts writes them as spark-builder; the
 * suite's checks (trust-boundary.ts) know them from here.
 */
import { mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import {
  dscFileName,
  jobSourceDir,
  reportJobId,
  versionWithoutEpoch,
  type JobRound,
  type Manifest,
  type PackageBuildJob,
  type ReportPayload,
} from '@spark/protocol';
import { changesText, dudText, writeRound, type ListedFile } from '../src/hostile/compromised-builder.js';

/**
 * The rounds the stand-in builder hands the signer, by the job's package name:
 * a `.buildinfo` that is the text of a `.changes` for another package, or of
 * a `.dud` for another job (a signing oracle); a `.changes` whose `Binary`
 * names another source's package, or that lists another source's `.deb`; and
 * two honest rounds, whose `.deb` the builder swaps after signing.
 */
export const ROUND_SCENARIOS = ['oracle-changes', 'oracle-dud', 'foreign-binary', 'foreign-file', 'swap-link', 'swap-bytes'] as const;
/** One of {@link ROUND_SCENARIOS}. */
export type RoundScenario = (typeof ROUND_SCENARIOS)[number];

/** The job of another worker whose `.dud` the oracle round lists as its `.buildinfo`. */
export const FOREIGN_JOB = 'd0d0d0d0-0000-4000-8000-000000000001';

/** Lines of the oracle rounds' `.buildinfo` texts, by which a signature on either would be found. */
export const ORACLE_MARKERS = ['Source: coreutils', `X-Spark-Job: ${FOREIGN_JOB}`] as const;

/** Another source's binary package, as the foreign rounds list it. */
export const FOREIGN_DEB = 'coreutils_9.9_amd64.deb';
const foreignDeb: ListedFile = { name: FOREIGN_DEB, data: Buffer.from('not really coreutils\n') };

/** The `.deb` of a round, the file the swap rounds replace after signing. */
export function debName(job: PackageBuildJob): string {
  return `${job.data.package_name}_${versionWithoutEpoch(job.data.package_version)}_${job.architecture}.deb`;
}

/** The `.buildinfo` text of an oracle round: a `.changes` for coreutils, or a `.dud` of {@link FOREIGN_JOB}. */
function oracleText(scenario: 'oracle-changes' | 'oracle-dud', suite: string): string {
  if (scenario === 'oracle-changes') {
    return changesText({
      source: 'coreutils',
      version: '9.9',
      architecture: 'amd64',
      binary: 'coreutils',
      distribution: suite,
      files: [foreignDeb],
    });
  }
  return dudText(FOREIGN_JOB, 'amd64', 'success', [{ name: `${FOREIGN_JOB}.log`, data: Buffer.from('the other job\n') }]);
}

/**
 * Writes the round of `scenario` for `job` as a builder would — its
 * artifacts, and the job's `.dsc` (downloaded from the job's `dsc_url`) in
 * the workspace's source dir, where the signer reads the source's packages —
 * and returns the manifest to queue for the signer.
 */
export async function writeHostileRound(
  workspacesDir: string,
  job: PackageBuildJob,
  round: JobRound,
  scenario: RoundScenario,
): Promise<Manifest> {
  const { package_name: source, package_version: version, suite } = job.data;
  const arch = job.architecture;
  const stem = `${source}_${versionWithoutEpoch(version)}_${arch}`;
  const deb = { name: debName(job), data: Buffer.from(`not really a deb of ${source} ${version}\n`) };
  const listed: ListedFile[] = [deb];
  if (scenario === 'foreign-binary' || scenario === 'foreign-file') listed.push(foreignDeb);
  if (scenario === 'oracle-changes' || scenario === 'oracle-dud') {
    listed.push({ name: `${stem}.buildinfo`, data: Buffer.from(oracleText(scenario, suite)) });
  }
  const binary = scenario === 'foreign-binary' ? `${source} coreutils` : source;
  const changes = {
    name: `${stem}.changes`,
    data: Buffer.from(changesText({ source, version, architecture: arch, binary, distribution: suite, files: listed })),
  };
  const log = { name: `${round.uuid}.log`, data: Buffer.from(`build of ${source} ${version} (${scenario})\n`) };
  const dud = { name: `${round.uuid}.dud`, data: Buffer.from(dudText(round.uuid, arch, 'success', [log])) };
  const manifest = await writeRound(workspacesDir, round, job.repo, [...listed, changes, log, dud], {
    changes: changes.name,
    dud: dud.name,
  });
  const dscName = dscFileName(job.data.dsc_url);
  if (dscName === null) throw new Error(`dsc_url ${job.data.dsc_url} names no .dsc`);
  const response = await fetch(job.data.dsc_url);
  if (!response.ok) throw new Error(`GET ${job.data.dsc_url}: ${response.status}`);
  const sourceDir = jobSourceDir(workspacesDir, round);
  await mkdir(sourceDir, { recursive: true });
  await writeFile(join(sourceDir, dscName), Buffer.from(await response.arrayBuffer()));
  return manifest;
}

/** The uuids of the flood reports: jobs Lighthouse never handed out here. */
export const FLOOD_UUID_PREFIX = 'f100d000-0000-4000-8000-';

/** The `index`-th bogus report of a flood, with the id a builder's report of that kind would have. */
export function floodReport(index: number): { name: string; data: ReportPayload; opts: { jobId: string } } {
  const round = { uuid: `${FLOOD_UUID_PREFIX}${index.toString(16).padStart(12, '0')}`, round: '1' };
  const at = Date.now();
  // The builder's own kinds about a job never handed out here, and one kind it never sends.
  const kinds: ReportPayload[] = [
    { kind: 'accepted', ...round, at },
    { kind: 'status', ...round, at, logExcerpt: 'flood\n' },
    { kind: 'rejected', ...round, at, reason: 'flood' },
    { kind: 'success', ...round, at },
  ];
  const data = kinds[index % kinds.length] as ReportPayload;
  const slot =
    data.kind === 'accepted'
      ? { kind: 'accepted' as const }
      : data.kind === 'status'
        ? { kind: 'status' as const, seq: 1 }
        : { kind: 'final' as const };
  return { name: data.kind, data, opts: { jobId: reportJobId(round, slot) } };
}
