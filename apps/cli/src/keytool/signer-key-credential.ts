import { execFile } from 'node:child_process';
import { readdir, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { SIGNER_KEY_CREDSTORE } from '@spark/config';

/*
 * The signer's OpenPGP key as an encrypted systemd credential: `systemd-creds
 * encrypt` seals it with the host key (/var/lib/systemd/credential.secret,
 * root's alone) and, where there is one, the TPM2; the signer's unit names it
 * with LoadCredentialEncrypted=, and systemd decrypts it at each start into
 * the unit's credentials directory (memory that is never swapped, the
 * service's user's alone), where the signer reads it ($CREDENTIALS_DIRECTORY).
 * What this module knows: where the encrypted file and the drop-in go, and
 * how to run systemd-creds.
 */

/** Where `spark keytool install-signer-key` writes the encrypted key: systemd's own place for encrypted credentials. */
export const CREDSTORE_ENCRYPTED_DIR = SIGNER_KEY_CREDSTORE;

/** Directories whose `spark-signer.service.d/*.conf` drop-ins systemd reads, the operator's first. */
export const SYSTEM_UNIT_DIRS = ['/etc/systemd/system', '/run/systemd/system', '/usr/lib/systemd/system', '/lib/systemd/system'];

/** The drop-in `spark keytool install-signer-key` writes, in `<unit dir>/spark-signer.service.d/`. */
export const KEY_CREDENTIAL_DROP_IN = 'key-credential.conf';

/** The first line of that drop-in: it is the keytool's to rewrite. */
export const DROP_IN_MARKER = '# Written by spark keytool install-signer-key';

/** Keys `systemd-creds encrypt --with-key=` may seal the credential with; the others it offers give no confidentiality. */
export const SEALING_KEYS = ['host', 'tpm2', 'host+tpm2'] as const;
export type SealingKey = (typeof SEALING_KEYS)[number];

/** The text of the drop-in that passes credential `name`, encrypted in `file`, to the signer. */
export function dropInText(name: string, file: string): string {
  return `${DROP_IN_MARKER}: the signer's OpenPGP key, encrypted (GpgSecretKeyCredential in spark.toml).
# systemd decrypts it at each start of the signer into $CREDENTIALS_DIRECTORY/${name}, in memory.
[Service]
LoadCredentialEncrypted=${name}:${file}
`;
}

/** What `systemd-creds` printed and how it ended. */
interface CredsResult {
  code: number;
  stdout: Buffer;
  stderr: string;
}

/** Runs `systemd-creds` with `args`, `input` on its stdin; never rejects (a missing systemd-creds is code 127). */
export function systemdCreds(args: readonly string[], input?: Buffer): Promise<CredsResult> {
  return new Promise((resolve) => {
    const child = execFile(
      'systemd-creds',
      args,
      { encoding: 'buffer', maxBuffer: 16 * 1024 * 1024, timeout: 60_000 },
      (error, stdout, stderr) => {
        const missing = error?.code === 'ENOENT';
        const code = error ? (typeof error.code === 'number' ? error.code : missing ? 127 : 1) : 0;
        resolve({
          code,
          stdout,
          stderr: stderr.toString().trim() || (missing ? 'systemd-creds: not found (Debian: apt install systemd)' : (error?.message ?? '')),
        });
      },
    );
    child.stdin?.on('error', () => undefined);
    child.stdin?.end(input);
  });
}

/** The key to seal with when the operator names none: the TPM2 as well as the host key where there is a usable TPM2. */
export async function defaultSealingKey(): Promise<SealingKey> {
  // `has-tpm2` exits 0 only when firmware, driver and systemd all support it.
  return (await systemdCreds(['has-tpm2', '--quiet'])).code === 0 ? 'host+tpm2' : 'host';
}

/**
 * The decrypted content of the credential `name` encrypted in `file`, in
 * memory (`systemd-creds decrypt … -`: to stdout, never to a file). Needs root
 * (the host key) and, for a TPM2-sealed one, the same TPM2 in the same state.
 */
export async function decryptCredential(file: string, name: string): Promise<Buffer> {
  const result = await systemdCreds(['decrypt', `--name=${name}`, file, '-']);
  if (result.code !== 0) throw new Error(`systemd-creds decrypt ${file} failed (exit ${result.code}): ${result.stderr}`);
  return result.stdout;
}

/** Where a unit's drop-ins pass credential `name` with `LoadCredentialEncrypted=`. */
export interface CredentialDropIn {
  /** The drop-in file that says so. */
  dropIn: string;
  /** The encrypted file it names (a name without a path is looked up in {@link CREDSTORE_ENCRYPTED_DIR}, as systemd does first). */
  file: string;
}

/**
 * The `LoadCredentialEncrypted=` line of spark-signer.service's drop-ins (in
 * `unitDirs`, the first directory taking precedence for a drop-in of the same
 * name, as systemd does) that passes credential `name`; null when none does.
 */
export async function findCredentialDropIn(
  unitDirs: readonly string[],
  name: string,
  credstore = CREDSTORE_ENCRYPTED_DIR,
): Promise<CredentialDropIn | null> {
  // systemd reads the drop-ins of all directories in the order of their file names; of two with the same
  // name, the one in the earlier directory hides the other.
  const dropIns = new Map<string, string>();
  for (const dir of unitDirs) {
    const dropInDir = join(dir, 'spark-signer.service.d');
    for (const file of await readdir(dropInDir).catch(() => [] as string[])) {
      if (file.endsWith('.conf') && !dropIns.has(file)) dropIns.set(file, join(dropInDir, file));
    }
  }
  let found: CredentialDropIn | null = null;
  for (const file of [...dropIns.keys()].sort()) {
    const dropIn = dropIns.get(file) ?? '';
    const text = await readFile(dropIn, 'utf8').catch(() => '');
    for (const line of text.split('\n')) {
      const match = /^\s*LoadCredentialEncrypted\s*=\s*([^:\s]+)(?::(\S+))?\s*$/.exec(line);
      // The last line naming the credential is the one systemd uses.
      if (match?.[1] === name) found = { dropIn, file: match[2] ?? join(credstore, name) };
    }
  }
  return found;
}
