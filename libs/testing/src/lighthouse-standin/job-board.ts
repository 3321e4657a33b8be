import { readFile } from 'node:fs/promises';

/** A job's state at Lighthouse (laniakea `JobStatus`, the part a worker moves). */
export type StandInJobStatus = 'WAITING' | 'SCHEDULED' | 'RUNNING' | 'DONE';

/** A job as the stand-in hands it out: the `job` reply's fields; `kind` and `architecture` select it. */
export interface StandInJob {
  uuid: string;
  kind: string;
  architecture: string;
  [field: string]: unknown;
}

/** One job on the board and what happened to it. */
export interface BoardEntry {
  job: StandInJob;
  status: StandInJobStatus;
  /** `machine_id` of the worker it was handed to. */
  worker: string | null;
  /** `success` / `failure` once a worker reported the end. */
  result: 'success' | 'failure' | null;
  /** The last `job-status` excerpt (Lighthouse keeps only the latest). */
  logExcerpt: string | null;
}

/**
 * The jobs of a stand-in Lighthouse, with the state machine of
 * `jobs_worker.py`: WAITING → SCHEDULED on hand-out → RUNNING on
 * `job-accepted` → DONE on `job-success`/`job-failed`; `job-rejected` puts a
 * job back to WAITING, also after it was accepted.
 */
export class JobBoard {
  private readonly entries: BoardEntry[] = [];

  /** Adds a job in state WAITING. */
  add(job: StandInJob): void {
    this.entries.push({ job, status: 'WAITING', worker: null, result: null, logExcerpt: null });
  }

  /**
   * Puts a job back to WAITING under the same uuid, whatever its state, as
   * `lk-admin job retry`, Ariadne (a depwait's dependencies arrived) or the
   * stalled-job sweep do; it goes out again as the oldest waiting job of its kind.
   */
  retry(uuid: string): void {
    const entry = this.get(uuid);
    if (!entry) throw new Error(`stand-in: no job ${uuid} to retry`);
    Object.assign(entry, { status: 'WAITING', worker: null, result: null });
  }

  /** Deletes a job (as an admin deleting it in Laniakea): later reports about it get the unknown-job error. */
  remove(uuid: string): void {
    const index = this.entries.findIndex((entry) => entry.job.uuid === uuid);
    if (index !== -1) this.entries.splice(index, 1);
  }

  /** The entry of a job, or undefined. */
  get(uuid: string): BoardEntry | undefined {
    return this.entries.find((entry) => entry.job.uuid === uuid);
  }

  /** Hands out the first WAITING job of one of `kinds` for one of `architectures` (or `any`), as `_assign_suitable_job`. */
  assign(kinds: readonly string[], architectures: readonly string[], worker: string): StandInJob | null {
    for (const kind of kinds) {
      for (const arch of architectures) {
        const entry = this.entries.find(
          (candidate) =>
            candidate.status === 'WAITING' &&
            candidate.job.kind === kind &&
            (candidate.job.architecture === arch || candidate.job.architecture === 'any'),
        );
        if (entry) {
          entry.status = 'SCHEDULED';
          entry.worker = worker;
          return entry.job;
        }
      }
    }
    return null;
  }

  /** Applies a worker's report; returns an error message in Lighthouse's words, or null. */
  report(uuid: string, event: 'accepted' | 'rejected' | 'success' | 'failed' | 'status', logExcerpt?: string): string | null {
    const entry = this.get(uuid);
    if (!entry) return 'Unable to find job with the requested ID.';
    switch (event) {
      case 'accepted':
        entry.status = 'RUNNING';
        break;
      case 'rejected':
        entry.status = 'WAITING';
        entry.worker = null;
        break;
      case 'success':
      case 'failed':
        entry.status = 'DONE';
        entry.result = event === 'success' ? 'success' : 'failure';
        break;
      case 'status':
        entry.logExcerpt = logExcerpt ?? null;
        break;
    }
    return null;
  }
}

/** Reads jobs for a stand-in from a JSON file holding an array of job replies. */
export async function loadJobsFile(file: string): Promise<StandInJob[]> {
  const value = JSON.parse(await readFile(file, 'utf8')) as unknown;
  if (!Array.isArray(value)) throw new Error(`${file}: expected a JSON array of jobs`);
  return value.map((job: unknown, index) => {
    const record = job as Record<string, unknown> | null;
    if (!record || typeof record['uuid'] !== 'string' || typeof record['kind'] !== 'string' || typeof record['architecture'] !== 'string') {
      throw new Error(`${file}: job ${index} needs string uuid, kind and architecture`);
    }
    return record as StandInJob;
  });
}
