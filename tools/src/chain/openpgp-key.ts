import { execFile } from 'node:child_process';
import { chmod, mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { promisify } from 'node:util';

const run = promisify(execFile);

/** A throwaway OpenPGP signing key made with gpg, exported as the seed guide does. */
export interface ThrowawayKey {
  /** GNUPGHOME holding the key. */
  home: string;
  fingerprint: string;
  /** `gpg --export-secret-key -a` output, mode 0600: what `GpgSecretKeyFile` names. */
  secretKeyFile: string;
  /** Binary public keyring for `gpgv --keyring` and `dscverify --keyring`. */
  keyring: string;
}

/** Makes an Ed25519 sign-only key in a new GNUPGHOME under `dir` (a second or so). */
export async function makeThrowawayKey(dir: string, uid = 'Spark Worker <spark-worker@example.invalid>'): Promise<ThrowawayKey> {
  const home = join(dir, 'gnupg');
  await mkdir(home, { recursive: true, mode: 0o700 });
  const env = { ...process.env, GNUPGHOME: home };
  await run('gpg', ['--batch', '--passphrase', '', '--quick-gen-key', uid, 'ed25519', 'sign', 'never'], { env });
  const { stdout } = await run('gpg', ['--batch', '--with-colons', '--list-secret-keys'], { env });
  const fingerprint = /^fpr:+([0-9A-F]{40}):/m.exec(stdout)?.[1];
  if (!fingerprint) throw new Error(`gpg made no key:\n${stdout}`);
  const secretKeyFile = join(dir, 'worker_secret.gpg');
  const armored = await run('gpg', ['--batch', '--export-secret-key', '-a', fingerprint], { env });
  await writeFile(secretKeyFile, armored.stdout, { mode: 0o600 });
  await chmod(secretKeyFile, 0o600);
  const keyring = join(dir, 'worker-keyring.gpg');
  const exported = await run('gpg', ['--batch', '--export', fingerprint], { env, encoding: 'buffer' });
  await writeFile(keyring, exported.stdout);
  // gpg started an agent for the key generation; the key now lives in files, so stop it.
  await run('gpgconf', ['--homedir', home, '--kill', 'gpg-agent'], { env }).catch(() => undefined);
  return { home, fingerprint, secretKeyFile, keyring };
}
