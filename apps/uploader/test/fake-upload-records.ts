import { parseJobId, type ArchiveTarget, type JobRecord, type JobRound, type NewJobRecord, type UploadOutcome } from '@spark/protocol';
import { jobRecordSchema } from '@spark/protocol';
import type { FakeQueue } from '@spark/testing';
import type { UploaderReports } from '../src/upload-job.js';
import type { UploadProgress } from '../src/upload-progress.js';
import type { UploadRecords } from '../src/upload-records.js';
import { NoUploadTargetError } from '../src/upload-target.js';

/** One round's progress, as the Redis hash keeps it. */
interface ProgressFields {
  files: Map<string, 'sent' | 'done'>;
  reported: UploadOutcome | null;
  firstTryAt: number | null;
  tries: number;
  failedInARow: number;
  statusSeq: number | null;
}

/**
 * The uploader's records in memory, as `redisUploadRecords` keeps them in
 * Redis (test/upload-records.contract.test.ts runs the same cases on both):
 * job records as the connector writes them, the archive's upload targets,
 * and each round's progress, shared by every `progress(round)` of the round.
 */
export class FakeUploadRecords implements UploadRecords {
  private readonly records = new Map<string, string>();
  private readonly rounds = new Map<string, ProgressFields>();
  /** The upload targets, as the connector stores them from `archive-info`; null: none stored yet. */
  targets: Record<string, ArchiveTarget> | null = null;

  /** Writes the job record, as the connector does on a hand-out. */
  write(record: NewJobRecord): void {
    this.records.set(record.uuid.toLowerCase(), JSON.stringify(record));
  }

  read(uuid: string): Promise<JobRecord | null> {
    const text = this.records.get(uuid.toLowerCase());
    if (text === undefined) return Promise.resolve(null);
    const parsed = jobRecordSchema.safeParse(JSON.parse(text));
    return Promise.resolve(parsed.success ? parsed.data : null);
  }

  target(repo: string): Promise<ArchiveTarget> {
    if (this.targets === null) return Promise.reject(new NoUploadTargetError('no upload targets known yet (none stored in memory)'));
    const target = this.targets[repo];
    if (target) return Promise.resolve(target);
    const known = Object.keys(this.targets);
    return Promise.reject(
      new NoUploadTargetError(
        `Lighthouse names no upload target for repository ${repo} (known: ${known.length ? known.join(', ') : 'none'})`,
      ),
    );
  }

  progress(round: JobRound): UploadProgress {
    const key = `${round.uuid}.${round.round}`;
    const fields = (): ProgressFields => {
      let found = this.rounds.get(key);
      if (!found) {
        found = { files: new Map(), reported: null, firstTryAt: null, tries: 0, failedInARow: 0, statusSeq: null };
        this.rounds.set(key, found);
      }
      return found;
    };
    const done = <T>(value: T) => Promise.resolve(value);
    return {
      files: () => done(new Map(fields().files)),
      markSent: (name) => done(void fields().files.set(name, 'sent')),
      unmarkSent: (name) => done(void (fields().files.get(name) === 'sent' && fields().files.delete(name))),
      markDone: (name) => done(void fields().files.set(name, 'done')),
      reported: () => done(fields().reported),
      markReported: (outcome) => done(void (fields().reported = JSON.parse(JSON.stringify(outcome)) as UploadOutcome)),
      startTry(now) {
        const f = fields();
        f.firstTryAt ??= now;
        f.tries += 1;
        return done({ tries: f.tries, firstTryAt: f.firstTryAt });
      },
      failedTry(madeProgress) {
        const f = fields();
        f.failedInARow = madeProgress ? 1 : f.failedInARow + 1;
        return done(f.failedInARow);
      },
      statusSeq: () => done(fields().statusSeq),
      setStatusSeq: (seq) => done(void (fields().statusSeq = seq)),
    };
  }
}

/** The uploader's report queue in memory: `lastStatusSeq` reads the ids the queue keeps, as on BullMQ. */
export function fakeUploaderReports(queue: FakeQueue): UploaderReports {
  return {
    add: (name, data, options) => queue.add(name, data, options),
    lastStatusSeq(round) {
      let last = 0;
      for (const job of queue.jobs()) {
        const id = parseJobId(job.id);
        if (id?.type === 'report' && id.slot.kind === 'status' && id.uuid === round.uuid && id.round === round.round) {
          last = Math.max(last, id.slot.seq);
        }
      }
      return Promise.resolve(last);
    },
  };
}
