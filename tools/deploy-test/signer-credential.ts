import { readFile } from 'node:fs/promises';
import { waitFor } from '@spark/testing';
import { POLL_MS } from './checks.js';
import type { Machine } from './machine.js';

/** Where systemd decrypts the key for the signer: its credentials directory, in memory. */
export const CREDENTIAL = '/run/credentials/spark-signer.service/spark-signer-key';
/** The encrypted key `spark keytool install-signer-key` writes. */
export const ENCRYPTED_CREDENTIAL = '/etc/credstore.encrypted/spark-signer-key';
/** The signer's drop-in that loads it (`LoadCredentialEncrypted=`). */
export const CREDENTIAL_DROP_IN = '/etc/systemd/system/spark-signer.service.d/key-credential.conf';

/** Options of {@link keyToCredential}. */
export interface KeyToCredentialOptions {
  /** The armored secret key as exported on the host: a line of its body found in a file is a clear copy. */
  armoredKey: string;
  /** The key's fingerprint (`GpgKeyID`), which the signer names when it starts taking sign jobs. */
  fingerprint: string;
  /** spark.toml in the machine. */
  config: string;
  /** The clear key file in the machine (spark.toml's `GpgSecretKeyFile`), shredded once the credential is installed. */
  keyFile: string;
  /** The name of the directory the test shares with the machine, which holds the operator's export: not searched. */
  shareName: string;
  /** Pushes a job through the chain and checks its signatures with gpgv; resolves with what it verified. */
  signJob: () => Promise<string>;
}

/**
 * README step 3, "The key never on disk in clear", as an operator follows
 * it: `spark keytool install-signer-key` (the key is `GpgSecretKeyFile`'s),
 * the clear file shredded (before the restart, so that the signer cannot
 * have read it), `systemctl restart spark-signer`. Then the signer must take sign jobs with
 * the key, `signJob` must sign a job, the key must be in clear only in the
 * signer's credentials directory (ramfs or tmpfs) and in no file under
 * /etc, /var, /srv, /root, /home or /tmp, and `spark verify` must report both
 * key checks OK, one naming the credential. Resolves with what it saw.
 */
export async function keyToCredential(m: Machine, options: KeyToCredentialOptions): Promise<string> {
  // A line of the armored key's body: in any clear copy of this key, whatever its file.
  const armor = (await readFile(options.armoredKey, 'utf8')).split('\n');
  const bodyLine = armor.find((line, i) => i > 2 && /^[A-Za-z0-9+/]{60,}$/.test(line));
  if (!bodyLine) throw new Error(`no body line in ${options.armoredKey}`);
  const installed = await m.sh('spark keytool install-signer-key');
  await m.sh(`shred -u ${options.keyFile}`);
  await m.sh('systemctl restart spark-signer');
  // This start's log (its invocation id) names the key it loaded.
  const started = async () =>
    (
      await m.sh(
        "journalctl -u spark-signer _SYSTEMD_INVOCATION_ID=$(systemctl show -p InvocationID --value spark-signer) -o cat --no-pager | grep 'taking sign jobs' || true",
      )
    ).includes(options.fingerprint);
  await waitFor('the signer taking sign jobs with the key from its credential', started, {
    timeoutMs: 30_000,
    intervalMs: POLL_MS,
  }).catch(async (error: Error) => {
    throw new Error(`${error.message}\n${await m.sh('systemctl status --no-pager spark-signer 2>&1 || true')}`);
  });
  const signed = await options.signJob();
  // In clear only in the signer's credentials directory, which is memory; nowhere on disk.
  const fsType = (await m.sh(`stat -f -c %T ${CREDENTIAL}`)).trim();
  if (!['ramfs', 'tmpfs'].includes(fsType)) throw new Error(`${CREDENTIAL} is on ${fsType}, not in memory`);
  if ((await m.exec(['grep', '-qxF', bodyLine, CREDENTIAL])).code !== 0) throw new Error(`${CREDENTIAL} does not hold the key`);
  const copies = await m.exec(
    [
      'grep',
      '-rlsI',
      `--exclude-dir=${options.shareName}`,
      '-F',
      '-e',
      bodyLine,
      '-e',
      'BEGIN PGP PRIVATE KEY BLOCK',
      '/etc',
      '/var',
      '/srv',
      '/root',
      '/home',
      '/tmp',
    ],
    { timeoutMs: 300_000 },
  );
  if (copies.stdout.trim()) throw new Error(`an armored secret key on disk:\n${copies.stdout}`);
  type Report = { checks: { check: string; status: string; message: string }[] };
  const report = JSON.parse(
    (await m.exec(['spark', 'verify', '--json', '--config', options.config], { timeoutMs: 180_000 })).stdout,
  ) as Report;
  const keyChecks = report.checks.filter((c) => c.check.startsWith('OpenPGP key'));
  if (
    keyChecks.length !== 2 ||
    keyChecks.some((c) => c.status !== 'ok') ||
    !keyChecks.some((c) => /installed as the encrypted systemd credential spark-signer-key/.test(c.message))
  ) {
    throw new Error(`spark verify: ${JSON.stringify(keyChecks)}`);
  }
  return `${installed.split('\n')[0] ?? ''}; ${CREDENTIAL} on ${fsType}; ${signed} verified; spark verify: ${keyChecks.map((c) => c.message).join(' | ')}`;
}
