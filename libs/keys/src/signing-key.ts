import { readFile, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { openpgp, type PrivateKey } from './openpgp.js';

/** Name of the systemd credential (`LoadCredential=gpg-passphrase:…`) read when `[signer] PassphraseFile` is unset. */
export const PASSPHRASE_CREDENTIAL = 'gpg-passphrase';

/** A key the signer cannot use; the message says which file or key and what to do. */
export class SigningKeyError extends Error {
  override readonly name = 'SigningKeyError';
  /** `unreadable`: the key or passphrase file could not be read at all (missing, no permission), rather than found wrong. */
  constructor(
    message: string,
    readonly unreadable = false,
  ) {
    super(message);
  }
}

/** The unlocked secret key and how it is named in logs and the audit log. */
export interface SigningKey {
  /** The decrypted key. Never logged, never put in Redis, never passed to a child process. */
  key: PrivateKey;
  /** Fingerprint of the primary key, uppercase hex (as gpg prints it). */
  fingerprint: string;
}

/** Where the key and its passphrase come from (from `spark.toml`). */
export interface SigningKeySource {
  /** `GpgSecretKeyFile`: the armored secret key, as `gpg --export-secret-key -a` writes it. */
  keyFile: string | null;
  /**
   * `GpgSecretKeyCredential`: the name of the systemd credential holding that
   * armored key, read from {@link credentialsDir}; null when the key is
   * {@link keyFile} (the config allows only one of the two).
   */
  keyCredential?: string | null;
  /** `GpgKeyID`: a full fingerprint or a long (16) or short (8 hex digit) key id. */
  keyId: string;
  /** `[signer] PassphraseFile`, or null. */
  passphraseFile: string | null;
  /** systemd's `$CREDENTIALS_DIRECTORY`: the key credential's directory, and the passphrase's when there is no passphrase file. */
  credentialsDir?: string | undefined;
  /** The time the key must be valid at (default now). */
  now?: Date;
}

/*
 * A file of systemd's credentials directory is 0400, made readable to the
 * service's user by a POSIX ACL where the file system has them (tmpfs), and
 * stat then shows the ACL's mask in the group bits (0440) although the group
 * has no access; the directory itself is the service's alone. So a credential
 * is refused only when others may read it; a file the operator put in place,
 * when group or others may.
 */
const LOOSE_FILE = { bits: 0o077, who: 'group or others', fix: 'go-rwx' };
const LOOSE_CREDENTIAL = { bits: 0o007, who: 'others', fix: 'o-rwx' };

async function readSecretFile(file: string, what: string, loose = LOOSE_FILE): Promise<string> {
  let mode: number;
  try {
    const info = await stat(file);
    if (!info.isFile()) throw new SigningKeyError(`${file}: ${what} is not a regular file`);
    mode = info.mode;
  } catch (error) {
    if (error instanceof SigningKeyError) throw error;
    const code = (error as NodeJS.ErrnoException).code;
    throw new SigningKeyError(
      code === 'ENOENT' ? `${file}: ${what} not found` : `${file}: cannot read ${what}: ${code ?? String(error)}`,
      true,
    );
  }
  if ((mode & loose.bits) !== 0) {
    throw new SigningKeyError(
      `${file}: ${what} is accessible by ${loose.who} (mode ${(mode & 0o777).toString(8).padStart(4, '0')}); run: chmod ${loose.fix} ${file}`,
    );
  }
  try {
    return await readFile(file, 'utf8');
  } catch (error) {
    throw new SigningKeyError(`${file}: cannot read ${what}: ${(error as NodeJS.ErrnoException).code ?? String(error)}`, true);
  }
}

/** True when `keyId` (fingerprint, long or short id; `0x` and spaces allowed) names `fingerprint`. */
export function keyIdMatches(keyId: string, fingerprint: string): boolean {
  const wanted = keyId.replace(/\s+/g, '').replace(/^0x/i, '').toLowerCase();
  const fpr = fingerprint.toLowerCase();
  if (!/^([0-9a-f]{8}|[0-9a-f]{16}|[0-9a-f]{40}|[0-9a-f]{64})$/.test(wanted)) return false;
  // v4 key ids are the fingerprint's tail, v6 ones its head (RFC 9580 §5.5.4).
  return wanted.length >= 40 ? wanted === fpr : fpr.endsWith(wanted) || (fpr.length === 64 && fpr.startsWith(wanted));
}

async function readPassphrase(
  source: Pick<SigningKeySource, 'passphraseFile' | 'credentialsDir'>,
): Promise<{ passphrase: string; from: string } | null> {
  const file = source.passphraseFile ?? (source.credentialsDir ? join(source.credentialsDir, PASSPHRASE_CREDENTIAL) : null);
  if (file === null) return null;
  if (source.passphraseFile === null) {
    try {
      await stat(file);
    } catch {
      return null;
    }
  }
  const text = await readSecretFile(file, 'passphrase file', source.passphraseFile === null ? LOOSE_CREDENTIAL : LOOSE_FILE);
  return { passphrase: text.replace(/\r?\n$/, ''), from: file };
}

/** True when the key or a subkey is protected with Argon2 (RFC 9580 §3.7.1.4). */
function protectedWithArgon2(key: PrivateKey): boolean {
  const packets = [key.keyPacket, ...key.getSubkeys().map((subkey) => subkey.keyPacket)];
  return packets.some((packet) => (packet as { s2k?: { type?: string } | null }).s2k?.type === 'argon2');
}

/**
 * The armored key as the config says to read it: `GpgSecretKeyFile`, or the
 * credential `GpgSecretKeyCredential` in `$CREDENTIALS_DIRECTORY`, which
 * systemd fills for the unit from `LoadCredentialEncrypted=` (decrypted, in
 * memory that is never swapped, readable by the service's user alone).
 */
async function readArmoredKey(source: SigningKeySource): Promise<{ armored: string; from: string }> {
  const credential = source.keyCredential ?? null;
  if (credential !== null) {
    if (!source.credentialsDir) {
      throw new SigningKeyError(
        `GpgSecretKeyCredential is ${credential}, but $CREDENTIALS_DIRECTORY is not set: the signer reads that credential only when systemd starts it ` +
          `with LoadCredentialEncrypted=${credential}:… (spark keytool install-signer-key writes that drop-in for spark-signer.service); ` +
          'to run it without systemd (spark run), name a key file with GpgSecretKeyFile instead',
      );
    }
    const file = join(source.credentialsDir, credential);
    try {
      return { armored: await readSecretFile(file, 'secret key credential', LOOSE_CREDENTIAL), from: file };
    } catch (error) {
      if (error instanceof SigningKeyError && error.unreadable && /not found$/.test(error.message)) {
        throw new SigningKeyError(
          `${error.message}: the unit passes no credential ${credential}; add LoadCredentialEncrypted=${credential}:<encrypted file> to spark-signer.service ` +
            '(spark keytool install-signer-key encrypts the key and writes that drop-in)',
          true,
        );
      }
      throw error;
    }
  }
  if (source.keyFile === null) {
    throw new SigningKeyError(
      'neither GpgSecretKeyFile nor GpgSecretKeyCredential is set: the signer needs the armored secret key (gpg --export-secret-key -a <GpgKeyID> > name_secret.gpg), ' +
        'as a file (GpgSecretKeyFile) or an encrypted systemd credential (spark keytool install-signer-key)',
    );
  }
  return { armored: await readSecretFile(source.keyFile, 'secret key file'), from: source.keyFile };
}

/**
 * Reads an armored secret key and checks it as the signer needs it, still
 * locked: it is `keyId` (the primary key or a subkey), neither revoked nor
 * expired at `now`, and can sign. `from` names where it came from in errors.
 */
export async function readSigningKey(armored: string, from: string, keyId: string, now = new Date()): Promise<SigningKey> {
  let key: PrivateKey;
  try {
    key = await openpgp.readPrivateKey({ armoredKey: armored });
  } catch (error) {
    throw new SigningKeyError(`${from}: not an armored OpenPGP secret key (${(error as Error).message})`);
  }
  const fingerprint = key.getFingerprint().toUpperCase();
  const named = [key.getFingerprint(), ...key.getSubkeys().map((subkey) => subkey.getFingerprint())];
  if (!named.some((fpr) => keyIdMatches(keyId, fpr))) {
    throw new SigningKeyError(`${from}: holds key ${fingerprint}, which is not GpgKeyID ${keyId}`);
  }
  if (await key.isRevoked(undefined, undefined, now)) {
    throw new SigningKeyError(`key ${fingerprint} is revoked; make a new key and register it at the archive`);
  }
  const expires = await key.getExpirationTime();
  if (expires instanceof Date && expires.getTime() <= now.getTime()) {
    throw new SigningKeyError(
      `key ${fingerprint} expired on ${expires.toISOString()}; extend it (gpg --quick-set-expire) and export it again`,
    );
  }
  try {
    await key.getSigningKey(undefined, now);
  } catch (error) {
    throw new SigningKeyError(`key ${fingerprint} cannot sign: ${(error as Error).message}`);
  }
  return { key, fingerprint };
}

/**
 * Loads and unlocks the signing key, refusing (with a {@link SigningKeyError})
 * a missing or group/other-accessible file or credential, a key that is not
 * `GpgKeyID`, an expired, revoked or sign-incapable key, and a missing or
 * wrong passphrase. Reads the key once and writes it nowhere.
 */
export async function loadSigningKey(source: SigningKeySource): Promise<SigningKey> {
  const { armored, from } = await readArmoredKey(source);
  return unlockSigningKey(await readSigningKey(armored, from, source.keyId, source.now), source);
}

/**
 * Unlocks a key {@link readSigningKey} read, with the passphrase from
 * `[signer] PassphraseFile` or the credential {@link PASSPHRASE_CREDENTIAL};
 * a key without a passphrase is returned as it is.
 */
export async function unlockSigningKey(
  { key, fingerprint }: SigningKey,
  source: Pick<SigningKeySource, 'passphraseFile' | 'credentialsDir'>,
): Promise<SigningKey> {
  if (key.isDecrypted()) return { key, fingerprint };
  const passphrase = await readPassphrase(source);
  if (passphrase === null) {
    throw new SigningKeyError(
      `key ${fingerprint} is passphrase-protected: set [signer] PassphraseFile or pass the systemd credential ${PASSPHRASE_CREDENTIAL}`,
    );
  }
  try {
    return { key: await openpgp.decryptKey({ privateKey: key, passphrase: passphrase.passphrase }), fingerprint };
  } catch {
    if (!('WebAssembly' in globalThis) && protectedWithArgon2(key)) {
      throw new SigningKeyError(
        `key ${fingerprint} is protected with Argon2, which openpgp.js computes in WebAssembly, and the signer runs without it (--lite-mode, libs/config node-flags.ts): export the key again from gpg (gpg --export-secret-key -a <GpgKeyID>), which protects it with its usual S2K`,
      );
    }
    throw new SigningKeyError(`${passphrase.from}: wrong passphrase for key ${fingerprint}`);
  }
}
