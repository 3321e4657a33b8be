import { appendFile, mkdir } from 'node:fs/promises';
import { dirname } from 'node:path';

/** One signature, as one JSON line in the audit log. */
export interface AuditEntry {
  /** ISO 8601 time of the signature. */
  time: string;
  /** Lighthouse job uuid. */
  uuid: string;
  /** The signed file's name. */
  file: string;
  /** SHA-256 of the text that was signed (the control file without any signature). */
  textSha256: string;
  /** SHA-256 of the clearsigned file as written (what the archive receives). */
  sha256: string;
  /** Primary key fingerprint of the signing key. */
  fingerprint: string;
}

/** Appends audit entries to a file only the signer can read and write. */
export interface AuditLog {
  append(entry: AuditEntry): Promise<void>;
}

/**
 * Opens the append-only audit log at `file`, creating its directory (0700)
 * and the file (0600) when missing. Each entry is one `appendFile` of one
 * line, so concurrent signers never interleave within a line.
 */
export async function openAuditLog(file: string): Promise<AuditLog> {
  await mkdir(dirname(file), { recursive: true, mode: 0o700 });
  await appendFile(file, '', { mode: 0o600 });
  return {
    append: (entry) => appendFile(file, `${JSON.stringify(entry)}\n`, { mode: 0o600, flag: 'a' }),
  };
}
