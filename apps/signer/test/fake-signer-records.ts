import { jobRecordSchema, type JobRecord, type JobRound, type NewJobRecord } from '@spark/protocol';
import type { SignerRecords } from '../src/signer-records.js';

/**
 * The signer's records in memory, as `redisSignerRecords` keeps them in Redis:
 * a job record is stored as the connector writes it (parsed with the
 * protocol's schema on the way out, as `readJobRecord` does), and the rounds
 * the signer took are noted per job.
 */
export class FakeSignerRecords implements SignerRecords {
  private readonly records = new Map<string, string>();
  /** `<method>://<fqdn>` per repository, as the stored `archive-info` gives it. */
  readonly uploadTargets = new Map<string, string>();
  /** The latest round the signer took, per job. */
  readonly signerRounds = new Map<string, string>();

  /** Writes the job record, as the connector does on a hand-out. */
  write(record: NewJobRecord): void {
    this.records.set(record.uuid.toLowerCase(), JSON.stringify(record));
  }

  /** Removes the job record, as when it expired or was never written. */
  delete(uuid: string): void {
    this.records.delete(uuid.toLowerCase());
  }

  read(uuid: string): Promise<JobRecord | null> {
    const text = this.records.get(uuid.toLowerCase());
    if (text === undefined) return Promise.resolve(null);
    const parsed = jobRecordSchema.safeParse(JSON.parse(text));
    return Promise.resolve(parsed.success ? parsed.data : null);
  }

  uploadTarget(repo: string): Promise<string | null> {
    return Promise.resolve(this.uploadTargets.get(repo) ?? null);
  }

  takeRound(round: JobRound): Promise<void> {
    this.signerRounds.set(round.uuid, round.round);
    return Promise.resolve();
  }
}
