import type { BuildResult, Job } from '@spark/protocol';
import type { FileDigests } from '@spark/service';
import type { DebspawnEnvironment } from './debspawn-command.js';
import type { DownloadTimeouts } from './fetch-source.js';
import type { JobLog } from './job-log.js';

/** What a runner needs for one job. */
export interface RunnerContext<J extends Job = Job> {
  job: J;
  /** This run's own directory in the job's workspace (exists, empty); another builder's run of the job never shares it. */
  workspace: string;
  log: JobLog;
  /** The container architecture: the job's, or this host's first for an `all` job (debspawn has no `all` image). */
  containerArchitecture: string;
  /** Aborted with a JobStop when the job must stop (time limit, cancel, shutdown, lost lock). */
  signal: AbortSignal;
  debspawn: DebspawnEnvironment;
  idleOutputTimeoutMs: number;
  killGraceMs: number;
  downloadTimeouts: DownloadTimeouts;
  /** Development only (`[builder] AllowFileUrls`): accept `file://` source URLs. */
  allowFileUrls: boolean;
}

/** A control file and the files it lists, all in one directory. */
export interface ControlFileSet {
  /** Directory holding the control file and its files. */
  dir: string;
  /** The control file's name (a `.changes`). */
  name: string;
  /** The names it lists. */
  files: readonly string[];
  /** Size and digests of the control file and of each file it lists, by name, as read once when the set was checked. */
  digests: ReadonlyMap<string, FileDigests>;
}

/**
 * How a runner ended: the job goes back to Lighthouse (`rejected`), or it ran
 * and its artifacts go on to be signed and uploaded (`built`).
 */
export type RunnerOutcome =
  | { type: 'rejected'; reason: string; needsOperator?: boolean }
  | {
      type: 'built';
      result: BuildResult;
      /** Why a build did not succeed, for the builder's log; null on success. */
      reason: string | null;
      /** The `.changes` and its files (package builds that succeeded). */
      changes: ControlFileSet | null;
      /** Further files (absolute paths) for the `.dud`: the Firehose report, image artifacts. */
      files: readonly string[];
      /**
       * A package build's `.dsc` as fetched and verified (absolute path): kept in
       * the workspace's source dir for the signer (`jobSourceDir`). Absent for other kinds.
       */
      dsc?: string;
    };
