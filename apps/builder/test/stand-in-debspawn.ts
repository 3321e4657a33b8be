import { createHash } from 'node:crypto';
import { chmod, mkdir, mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { jobLogFile, stageJobId, UUID } from '@spark/protocol';
import { makeSourcePackage, waitFor } from '@spark/testing';
import { serveDirectory } from './fixtures.js';

/*
 * What limits.test.ts and builder-redis.test.ts share. Limits are about
 * stopping a process tree, not about debspawn: a stand-in `debspawn` (set
 * through `[builder] Debspawn`) that stays silent or talks forever, with a
 * child process whose death proves the whole tree was stopped. The job's
 * suite picks what it does.
 */

/** The round of every job these tests hand the builder (as the connector would number it). */
export const R = '1764405000000';

const FAKE_DEBSPAWN = `#!/bin/sh
if [ "$1" = "--version" ]; then echo 0.0-test; exit 0; fi
echo "stand-in debspawn $*"
case "$*" in
  *flood*) head -c 30000000 /dev/zero | tr '\\0' x | fold -w 99; echo "flood done"; exit 1 ;;
  *handover*)
    for arg in "$@"; do case "$arg" in --results-dir=*) results=\${arg#--results-dir=} ;; esac; done
    ws=$(dirname "$(dirname "$results")"); mkdir -p "$ws/artifacts/$(basename "$ws" | cut -d. -f1).log"; echo "artifacts dir blocked"; exit 1 ;;
  *hungpipe*) sleep 600 & echo $! > "$SPARK_TEST_PIDS/$$.child"; echo "leader exits; its child keeps the pipe"; exit 1 ;;
  *endless*) sleep 600 & echo $! > "$SPARK_TEST_PIDS/$$.child"; yes "an endless build log line" ;;
  *lockloss*)
    if [ -e "$SPARK_TEST_PIDS/../lockloss-ran" ]; then echo "second run in $PWD"; exit 1; fi
    touch "$SPARK_TEST_PIDS/../lockloss-ran"; echo "first run in $PWD" ;;
esac
sleep 300 &
echo $! > "$SPARK_TEST_PIDS/$$.child"
case "$*" in
  *silent*) wait ;;
  *) while true; do echo "still building"; sleep 0.1; done ;;
esac
`;

/** The stand-in debspawn, the archive serving the `limited` source package, and where the builders work. */
export interface StandIn {
  /** A temp dir: `debspawn` (the stand-in), `ws` (the default WorkspaceRoot), `pids`. */
  root: string;
  /** The stand-in's path, for `[builder] Debspawn`. */
  debspawn: string;
  dscUrl: string;
  dscSha256: string;
  /** The `build` queue payload of a package-build of `limited` in `suite` (the stand-in's mode), with `overrides` of the job. */
  buildJob(uuid: string, suite: string, overrides?: Record<string, unknown>, round?: string): object;
  /** The `build` queue job id of `uuid`'s round (a uuid that is no UUID made safe, as the connector never would). */
  buildJobId(uuid: string, round?: string): string;
  /** The job data of a package-build of `limited` from `url`. */
  dataWith(url: string): Record<string, unknown>;
  /** The job log of `uuid`'s round under the default WorkspaceRoot. */
  logOf(uuid: string, round?: string): Promise<string>;
  /** Waits until `pattern` shows in the log of `uuid`. */
  logShows(uuid: string, pattern: RegExp): Promise<void>;
  /** The stand-in's child processes still alive (not zombies). */
  childrenAlive(): Promise<number[]>;
  close(): Promise<void>;
}

/** Writes the stand-in debspawn and serves the source package (SPARK_TEST_PIDS set for the stand-in while open). */
export async function openStandIn(name: string): Promise<StandIn> {
  const root = await mkdtemp(join(tmpdir(), `spark-builder-${name}-`));
  const pids = join(root, 'pids');
  await mkdir(pids);
  process.env['SPARK_TEST_PIDS'] = pids;
  const debspawn = join(root, 'debspawn');
  await writeFile(debspawn, FAKE_DEBSPAWN);
  await chmod(debspawn, 0o755);
  await mkdir(join(root, 'archive'));
  const pkg = await makeSourcePackage(join(root, 'archive'), { name: 'limited', version: '1.0' });
  const http = await serveDirectory(join(root, 'archive'));
  const dscUrl = `${http.url}/limited_1.0.dsc`;
  const dscSha256 = createHash('sha256')
    .update(await readFile(pkg.dsc))
    .digest('hex');
  const logOf = (uuid: string, round = R) => readFile(jobLogFile(join(root, 'ws', 'logs'), { uuid, round }), 'utf8');
  return {
    root,
    debspawn,
    dscUrl,
    dscSha256,
    buildJob: (uuid, suite, overrides = {}, round = R) => ({
      job: {
        uuid,
        module: 'default',
        kind: 'package-build',
        architecture: 'amd64',
        repo: 'master',
        data: { package_name: 'limited', package_version: '1.0', suite, dsc_url: dscUrl, sha256sum: dscSha256, do_indep: false },
        ...overrides,
      },
      round,
      receivedAt: Date.now(),
    }),
    buildJobId: (uuid, round = R) => (UUID.test(uuid) ? stageJobId({ uuid, round }, 'build') : uuid.replace(/[^0-9a-z-]/g, 'x')),
    dataWith: (url) => ({
      package_name: 'limited',
      package_version: '1.0',
      suite: 'bookworm',
      dsc_url: url,
      sha256sum: dscSha256,
      do_indep: false,
    }),
    logOf,
    logShows: async (uuid, pattern) => {
      await waitFor(`${String(pattern)} in the log of ${uuid}`, async () => pattern.test(await logOf(uuid).catch(() => '')), {
        timeoutMs: 30_000,
        intervalMs: 200,
      });
    },
    async childrenAlive() {
      const alive: number[] = [];
      for (const file of await readdir(pids)) {
        const pid = Number(await readFile(join(pids, file), 'utf8'));
        const state = await readFile(`/proc/${pid}/stat`, 'utf8').catch(() => null);
        if (state !== null && !/^\d+ \(.*\) Z/.test(state)) alive.push(pid);
      }
      return alive;
    },
    async close() {
      await http.close();
      delete process.env['SPARK_TEST_PIDS'];
      await rm(root, { recursive: true, force: true });
    },
  };
}
