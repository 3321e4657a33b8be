import { lstat, readdir } from 'node:fs/promises';
import { join } from 'node:path';
import type { SourcePackageSpec, RecordedRequest } from '@spark/testing';
import type { Redis } from '@spark/service';
import type { Chain, ServiceName } from '../src/chain/chain.js';

/** How a job ended at Lighthouse. */
export type JobEnd = 'job-success' | 'job-failed';

/** What the attacks of npm run test:hostile work with: the chain on this host and ways to watch it and to act as the builder. */
export interface Suite {
  chain: Chain;
  /** spark.toml as installed (`/etc/laniakea/spark.toml`): what the builder reads. */
  configFile: string;
  /** A connection as `spark-admin`, to look at the queues as an operator would. */
  admin: Redis;
  say: (line: string) => void;
  /** What Lighthouse received about job `uuid`. */
  requestsOf: (uuid: string) => RecordedRequest[];
  /** The same, as JSON text, to search for a reason. */
  said: (uuid: string) => string;
  /** How job `uuid` ended at Lighthouse, or undefined while it has not. */
  endOf: (uuid: string) => JobEnd | undefined;
  /** Waits for job `uuid` to end at Lighthouse (default 600 s). */
  ending: (uuid: string, timeoutMs?: number) => Promise<JobEnd>;
  /** Makes a source package, offers its build job at Lighthouse and returns the job's uuid. */
  packageJob: (spec: SourcePackageSpec) => Promise<string>;
  /** Runs `tools/hostile-build/as-builder.ts ARGS` as spark-builder and returns the JSON lines it printed; throws when it fails. */
  asBuilder: (args: string[], timeoutMs?: number) => Promise<Record<string, unknown>[]>;
  /** Calls `listener` with every log line of every service from now on; the function returned stops it. */
  onLog: (listener: (service: ServiceName, line: string) => void) => () => void;
}

/** Every regular file below `dir` (links not followed). */
export async function filesBelow(dir: string): Promise<string[]> {
  const found: string[] = [];
  for (const name of await readdir(dir).catch(() => [] as string[])) {
    const path = join(dir, name);
    const info = await lstat(path);
    if (info.isDirectory()) found.push(...(await filesBelow(path)));
    else if (info.isFile()) found.push(path);
  }
  return found;
}
