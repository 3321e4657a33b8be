import { stat } from 'node:fs/promises';
import type { SparkConfig } from '@spark/config';
import { loadSigningKey, SigningKeyError } from '@spark/keys/signing-key';
import { ok, problem, skipped, type CheckResult } from './check-result.js';

/**
 * The signer's key loads as the signer loads it (loadSigningKey): it is
 * `GpgKeyID`, can sign, is neither expired nor revoked, and its passphrase
 * (from `[signer] PassphraseFile`) unlocks it. A passphrase given only as the
 * systemd credential cannot be read outside the unit: then the rest is checked.
 */
export async function checkSigningKey(config: SparkConfig, isRoot: boolean): Promise<CheckResult> {
  const check = 'OpenPGP key';
  if (config.gpgSecretKeyFile === null) {
    return problem(
      check,
      'config',
      'GpgSecretKeyFile is not set: the signer needs the armored secret key (gpg --export-secret-key -a <GpgKeyID> > FILE)',
    );
  }
  const present = await stat(config.gpgSecretKeyFile).then(
    () => true,
    (error: NodeJS.ErrnoException) => error.code !== 'ENOENT',
  );
  if (!present) return skipped(check, 'not-applicable', `${config.gpgSecretKeyFile} is missing (see above)`);
  try {
    const key = await loadSigningKey({
      keyFile: config.gpgSecretKeyFile,
      keyId: config.gpgKeyId,
      passphraseFile: config.signer.passphraseFile,
    });
    return ok(check, `${key.fingerprint} is GpgKeyID ${config.gpgKeyId} and can sign`);
  } catch (error) {
    if (!(error instanceof SigningKeyError)) throw error;
    if (!isRoot && /EACCES/.test(error.message)) return skipped(check, 'not-root', `cannot read ${config.gpgSecretKeyFile} without root`);
    if (/is passphrase-protected: set \[signer\] PassphraseFile/.test(error.message)) {
      return ok(
        check,
        `${error.message.split(' ')[1] ?? ''} is GpgKeyID ${config.gpgKeyId}; its passphrase (the systemd credential, if any) is not checked here`,
      );
    }
    return problem(check, 'config', error.message);
  }
}
