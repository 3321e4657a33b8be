import { stat } from 'node:fs/promises';
import type { SparkConfig } from '@spark/config';
import { loadSigningKey, readSigningKey, SigningKeyError, unlockSigningKey, type SigningKey } from '@spark/keys/signing-key';
import { CREDSTORE_ENCRYPTED_DIR, decryptCredential, findCredentialDropIn, SYSTEM_UNIT_DIRS } from '../keytool/signer-key-credential.js';
import { ok, problem, skipped, type CheckResult } from './check-result.js';
import { checkFile } from './file-checks.js';
import type { AccountBook, WorkerAccounts } from './host-accounts.js';

/** Where the signer's key credential is looked for; tests give their own. */
export interface SignerKeyPlaces {
  /** Unit directories whose spark-signer.service.d drop-ins are read (default {@link SYSTEM_UNIT_DIRS}). */
  unitDirs?: readonly string[];
  /** Where a credential named without a path is (default {@link CREDSTORE_ENCRYPTED_DIR}). */
  credstoreDir?: string;
}

const CHECK = 'OpenPGP key';

/** The check of a key read and checked (`readSigningKey`), then unlocked as the signer would unlock it. */
async function keyResult(config: SparkConfig, how: string, read: () => Promise<SigningKey>): Promise<CheckResult> {
  try {
    const key = await unlockSigningKey(await read(), { passphraseFile: config.signer.passphraseFile });
    return ok(CHECK, `${key.fingerprint} is GpgKeyID ${config.gpgKeyId} and can sign; ${how}`);
  } catch (error) {
    if (!(error instanceof SigningKeyError)) throw error;
    if (/is passphrase-protected: set \[signer\] PassphraseFile/.test(error.message)) {
      return ok(
        CHECK,
        `${error.message.split(' ')[1] ?? ''} is GpgKeyID ${config.gpgKeyId}; its passphrase (the systemd credential, if any) is not checked here; ${how}`,
      );
    }
    return problem(CHECK, 'config', error.message);
  }
}

/**
 * The key as `GpgSecretKeyCredential` says: a drop-in of spark-signer.service
 * passes it (`LoadCredentialEncrypted=<name>:<file>`), the encrypted file is
 * root's alone, and, as root, it decrypts (`systemd-creds decrypt`, to
 * memory) to `GpgKeyID`, able to sign.
 */
async function checkKeyCredential(
  config: SparkConfig,
  name: string,
  isRoot: boolean,
  accounts: { book: AccountBook; names: WorkerAccounts },
  places: SignerKeyPlaces,
): Promise<CheckResult[]> {
  const found = await findCredentialDropIn(places.unitDirs ?? SYSTEM_UNIT_DIRS, name, places.credstoreDir ?? CREDSTORE_ENCRYPTED_DIR);
  if (found === null) {
    return [
      problem(
        'OpenPGP key credential',
        'config',
        `GpgSecretKeyCredential is ${name}, but no drop-in of spark-signer.service passes it (LoadCredentialEncrypted=${name}:FILE): run spark keytool install-signer-key`,
      ),
      skipped(CHECK, 'not-applicable', 'needs the credential (see above)'),
    ];
  }
  const file = await checkFile(
    {
      what: 'OpenPGP key credential',
      path: found.file,
      type: 'file',
      owners: [accounts.names.root],
      mode: 0o600,
      required: 0o400,
      create: `encrypt the key there: spark keytool install-signer-key (it writes ${found.file} and ${found.dropIn})`,
    },
    accounts.book,
    isRoot,
  );
  const results = [{ ...file, message: `${file.message}; passed by ${found.dropIn}` }];
  if (file.status !== 'ok') return [...results, skipped(CHECK, 'not-applicable', `needs ${found.file} (see above)`)];
  if (!isRoot) return [...results, skipped(CHECK, 'not-root', `only root can decrypt ${found.file}`)];
  let armored: Buffer;
  try {
    armored = await decryptCredential(found.file, name);
  } catch (error) {
    return [
      ...results,
      problem(
        CHECK,
        'config',
        `${(error as Error).message}: systemd cannot give it to the signer either; encrypt the key again on this host: spark keytool install-signer-key --force FILE`,
      ),
    ];
  }
  const how = `installed as the encrypted systemd credential ${name} (${found.file}), in clear only in the signer's credentials directory`;
  return [...results, await keyResult(config, how, () => readSigningKey(armored.toString('utf8'), found.file, config.gpgKeyId))];
}

/**
 * The signer's key, the way spark.toml installs it, loads as the signer
 * loads it (loadSigningKey): it is `GpgKeyID`, can sign, is neither expired
 * nor revoked, and its passphrase (from `[signer] PassphraseFile`) unlocks
 * it. A passphrase given only as the systemd credential cannot be read
 * outside the unit: then the rest is checked. The check's message says which
 * way the key is installed: a file in clear (`GpgSecretKeyFile`) or an
 * encrypted systemd credential (`GpgSecretKeyCredential`, see
 * checkKeyCredential).
 */
export async function checkSigningKey(
  config: SparkConfig,
  isRoot: boolean,
  accounts: { book: AccountBook; names: WorkerAccounts },
  places: SignerKeyPlaces = {},
): Promise<CheckResult[]> {
  if (config.gpgSecretKeyCredential !== null) return checkKeyCredential(config, config.gpgSecretKeyCredential, isRoot, accounts, places);
  const keyFile = config.gpgSecretKeyFile;
  if (keyFile === null) {
    return [
      problem(
        CHECK,
        'config',
        'neither GpgSecretKeyFile nor GpgSecretKeyCredential is set: the signer needs the armored secret key (gpg --export-secret-key -a <GpgKeyID> > FILE), then spark keytool install-signer-key FILE',
      ),
    ];
  }
  const present = await stat(keyFile).then(
    () => true,
    (error: NodeJS.ErrnoException) => error.code !== 'ENOENT',
  );
  if (!present) return [skipped(CHECK, 'not-applicable', `${keyFile} is missing (see above)`)];
  const result = await keyResult(
    config,
    `installed as the file ${keyFile}, in clear on disk (spark keytool install-signer-key makes it an encrypted systemd credential)`,
    () => loadSigningKey({ keyFile, keyId: config.gpgKeyId, passphraseFile: config.signer.passphraseFile }),
  );
  if (!isRoot && result.status === 'problem' && /EACCES/.test(result.message)) {
    return [skipped(CHECK, 'not-root', `cannot read ${keyFile} without root`)];
  }
  return [result];
}
