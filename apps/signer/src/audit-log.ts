import { constants } from 'node:fs';
import { lstat, mkdir, open, type FileHandle } from 'node:fs/promises';
import { dirname } from 'node:path';

/** What a job was handed out for, as every audit line names it (from the connector's job record). */
export interface AuditJob {
  /** Lighthouse job uuid. */
  uuid: string;
  /** The round (see job-ids.ts). */
  round: string;
  /** Source package and version of a package build; null for other kinds or when unknown. */
  package: string | null;
  version: string | null;
  /** The suite the job was handed out for (the `.changes`' Distribution). */
  distribution: string | null;
  /** Archive repository the results go to. */
  repository: string | null;
  /** Where that repository's uploads go (`<method>://<fqdn>` from `archive-info`), null when unknown. */
  uploadTarget: string | null;
}

/** One signature, as one JSON line in the audit log. */
export interface SignatureEntry extends AuditJob {
  event: 'signed';
  /** ISO 8601 time of the signature. */
  time: string;
  /** The signed file's name. */
  file: string;
  /** SHA-256 of the text that was signed (the control file without any signature). */
  textSha256: string;
  /** SHA-256 of the clearsigned file as written (what the archive receives). */
  sha256: string;
  /** Primary key fingerprint of the signing key. */
  fingerprint: string;
}

/** A sign job refused: nothing of it was signed. */
export interface RefusalEntry extends AuditJob {
  event: 'refused';
  time: string;
  /** Why, as the failed report says it. */
  reason: string;
}

/** One line of the audit log. */
export type AuditEntry = SignatureEntry | RefusalEntry;

/** Appends audit entries to a file only the signer can read and write. */
export interface AuditLog {
  /** The path the log was opened at. */
  readonly file: string;
  append(entry: AuditEntry): Promise<void>;
  /**
   * Opens the path again, with the checks of {@link openAuditLog}, and writes
   * every later entry there: after log rotation renamed the file (SIGHUP,
   * `systemctl reload spark-signer`). Entries already being written finish in
   * the file opened before, which is then closed. When the path cannot be
   * opened safely, throws {@link AuditLogError} and keeps writing to the file
   * it has, so no entry is lost.
   */
  reopen(): Promise<void>;
  /** Waits for entries being written and a reopen under way, then closes the file. */
  close(): Promise<void>;
}

/** The audit log cannot be opened safely: the signer must not start. */
export class AuditLogError extends Error {
  override readonly name = 'AuditLogError';
}

const GROUP_OR_OTHER_WRITE = 0o022;

async function checkDirectory(dir: string): Promise<void> {
  const info = await lstat(dir).catch((error: NodeJS.ErrnoException) => {
    throw new AuditLogError(`cannot use the audit log directory ${dir}: ${error.code ?? String(error)}`);
  });
  if (info.isSymbolicLink()) throw new AuditLogError(`the audit log directory ${dir} is a symbolic link; refusing to write through it`);
  if (!info.isDirectory()) throw new AuditLogError(`the audit log directory ${dir} is not a directory`);
  if (info.uid !== process.getuid?.()) {
    throw new AuditLogError(`the audit log directory ${dir} belongs to uid ${info.uid}, not to the signer (uid ${process.getuid?.()})`);
  }
  if ((info.mode & GROUP_OR_OTHER_WRITE) !== 0) {
    throw new AuditLogError(
      `the audit log directory ${dir} is writable by others (mode ${(info.mode & 0o7777).toString(8)}); it must be the signer's alone (0700)`,
    );
  }
}

/**
 * Opens `file` for appending, without following a link (created 0600), in a
 * checked directory (created 0700 when missing); it must be a regular file of
 * the signer's with one link.
 */
async function openChecked(file: string): Promise<FileHandle> {
  const dir = dirname(file);
  await mkdir(dir, { recursive: true, mode: 0o700 });
  await checkDirectory(dir);
  let handle: FileHandle;
  try {
    handle = await open(
      file,
      constants.O_WRONLY | constants.O_APPEND | constants.O_CREAT | constants.O_NOFOLLOW | constants.O_NONBLOCK,
      0o600,
    );
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    if (code === 'ELOOP') throw new AuditLogError(`the audit log ${file} is a symbolic link; refusing to write through it`);
    throw new AuditLogError(`cannot open the audit log ${file}: ${code ?? String(error)}`);
  }
  const info = await handle.stat();
  const problem = !info.isFile()
    ? 'is not a regular file'
    : info.nlink !== 1
      ? `has ${info.nlink} hard links`
      : info.uid !== process.getuid?.()
        ? `belongs to uid ${info.uid}, not to the signer`
        : null;
  if (problem) {
    await handle.close();
    throw new AuditLogError(`the audit log ${file} ${problem}; refusing to write to it`);
  }
  return handle;
}

/**
 * Opens the append-only audit log at `file` for the life of the signer (or
 * until {@link AuditLog.reopen}). Its directory is created (0700) when
 * missing, and must be a real directory owned by the signer that nobody else
 * can write (`LogsDirectory=` with `LogsDirectoryMode=0700` in the unit). The
 * file is opened `O_APPEND` without following a link (created 0600), and must
 * be a regular file of the signer's with one link. Throws
 * {@link AuditLogError} otherwise. Every entry is one `write` of one line to
 * the file that was opened, so lines never interleave and renaming or
 * replacing the path afterwards cannot redirect them.
 */
export async function openAuditLog(file: string): Promise<AuditLog> {
  let current = await openChecked(file);
  const writing = new Set<Promise<unknown>>();
  // Reopens run one at a time, and close waits for them.
  let reopening: Promise<void> = Promise.resolve();
  const settle = () => Promise.allSettled([...writing]);
  return {
    file,
    async append(entry) {
      const write = current.write(`${JSON.stringify(entry)}\n`);
      writing.add(write);
      try {
        await write;
      } finally {
        writing.delete(write);
      }
    },
    reopen() {
      const next = reopening.then(async () => {
        const opened = await openChecked(file);
        const previous = current;
        current = opened;
        await settle();
        await previous.close();
      });
      reopening = next.catch(() => undefined);
      return next;
    },
    async close() {
      await reopening;
      await settle();
      await current.close();
    },
  };
}
