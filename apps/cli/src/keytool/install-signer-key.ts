import { mkdir, open, readFile, rename, rm, stat } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { ConfigError, DEFAULT_SIGNER_KEY_CREDENTIAL, formatProblem, parseConfig, type SparkConfig } from '@spark/config';
import { readSigningKey } from '@spark/keys/signing-key';
// For the command, which loads this module (and openpgp with it) only when it runs.
export { SigningKeyError } from '@spark/keys/signing-key';
import {
  CREDSTORE_ENCRYPTED_DIR,
  decryptCredential,
  defaultSealingKey,
  DROP_IN_MARKER,
  dropInText,
  KEY_CREDENTIAL_DROP_IN,
  systemdCreds,
  type SealingKey,
} from './signer-key-credential.js';

/** Where the command writes; the defaults are the host's, tests give their own. */
export interface SignerKeyHost {
  /** Directory of encrypted credentials (default {@link CREDSTORE_ENCRYPTED_DIR}). */
  credstoreDir?: string;
  /** Unit directory the drop-in goes to (default /etc/systemd/system). */
  unitDir?: string;
  /** Runs `systemctl daemon-reload` after writing the drop-in (default: when systemd runs here). */
  reloadSystemd?: () => Promise<void>;
}

/** What {@link installSignerKey} did, for the operator. */
export interface InstalledSignerKey {
  fingerprint: string;
  name: string;
  sealedWith: SealingKey;
  encryptedFile: string;
  dropIn: string;
  /** The line spark.toml got, or null when it already named the credential. */
  configChange: string | null;
}

/** Writes `content` to a new temp file beside `path`, with `mode` (and `owner`, if given); resolves to its name. */
async function writeTemp(path: string, content: string | Buffer, mode: number, owner?: { uid: number; gid: number }): Promise<string> {
  const tmp = join(dirname(path), `.${Date.now().toString(36)}.${process.pid}.tmp`);
  const handle = await open(tmp, 'wx', mode);
  try {
    await handle.writeFile(content);
    await handle.chmod(mode);
    if (owner) await handle.chown(owner.uid, owner.gid);
    await handle.sync();
  } catch (error) {
    await handle.close();
    await rm(tmp, { force: true });
    throw error;
  }
  await handle.close();
  return tmp;
}

/** Replaces `path` by `content` at once (a temp file renamed over it). */
async function replaceFile(path: string, content: string | Buffer, mode: number, owner?: { uid: number; gid: number }): Promise<void> {
  await rename(await writeTemp(path, content, mode, owner), path);
}

/**
 * spark.toml with the key named as the credential: the top-level
 * `GpgSecretKeyFile` line (a plain `key = 'value'` line before any table)
 * becomes a comment and `GpgSecretKeyCredential = '<name>'` follows it; with
 * no such line the setting goes before the first table. Null when the config
 * names the credential already.
 */
export function configWithCredential(text: string, config: SparkConfig, name: string): { text: string; line: string } | null {
  if (config.gpgSecretKeyCredential !== null) return null;
  const line = `GpgSecretKeyCredential = '${name}'`;
  const lines = text.split('\n');
  const firstTable = lines.findIndex((l) => /^\s*\[/.test(l));
  const topLevel = firstTable === -1 ? lines.length : firstTable;
  const keyFileLine = lines.slice(0, topLevel).findIndex((l) => /^\s*GpgSecretKeyFile\s*=/.test(l));
  if (config.gpgSecretKeyFile !== null && keyFileLine === -1) {
    throw new Error(
      `${config.file}: GpgSecretKeyFile is set, but not on a line of its own before the first table: replace it by hand with ${line}`,
    );
  }
  if (keyFileLine !== -1) {
    lines.splice(
      keyFileLine,
      1,
      `# ${(lines[keyFileLine] ?? '').trim()}`,
      `# The key above is now the encrypted systemd credential ${name} (spark keytool install-signer-key): shred the file.`,
      line,
    );
  } else {
    lines.splice(topLevel, 0, `# The signer's key, an encrypted systemd credential (spark keytool install-signer-key).`, line);
  }
  return { text: lines.join('\n'), line };
}

/**
 * Installs the signer's key as an encrypted systemd credential:
 *
 * 1. checks the armored key in `keyFile` is `GpgKeyID`, valid and able to sign;
 * 2. encrypts it with `systemd-creds encrypt --name=<name>` (`sealWith`, or
 *    the host key and the TPM2 where there is one, else the host key) into
 *    `<credstore>/<name>`, root's alone (0600), and decrypts it again to check
 *    it gives back the same key on this host;
 * 3. writes the drop-in `spark-signer.service.d/key-credential.conf`
 *    (`LoadCredentialEncrypted=<name>:<file>`) and reloads systemd;
 * 4. names the credential in spark.toml (`GpgSecretKeyCredential`, in place
 *    of `GpgSecretKeyFile`).
 *
 * `<name>` is spark.toml's `GpgSecretKeyCredential`, else
 * {@link DEFAULT_SIGNER_KEY_CREDENTIAL}. The clear key is read, never
 * written; removing `keyFile` is the operator's (the command says how).
 */
export async function installSignerKey(
  config: SparkConfig,
  keyFile: string,
  options: { sealWith?: SealingKey; force?: boolean },
  host: SignerKeyHost = {},
): Promise<InstalledSignerKey> {
  const name = config.gpgSecretKeyCredential ?? DEFAULT_SIGNER_KEY_CREDENTIAL;
  const credstore = host.credstoreDir ?? CREDSTORE_ENCRYPTED_DIR;
  const encryptedFile = join(credstore, name);
  const dropIn = join(host.unitDir ?? '/etc/systemd/system', 'spark-signer.service.d', KEY_CREDENTIAL_DROP_IN);

  const armored = await readFile(keyFile);
  const { fingerprint } = await readSigningKey(armored.toString('utf8'), keyFile, config.gpgKeyId);
  const exists = await stat(encryptedFile).then(
    () => true,
    () => false,
  );
  if (exists && !options.force) {
    throw new Error(`${encryptedFile} exists: pass --force to replace the key it holds`);
  }
  const existingDropIn = await readFile(dropIn, 'utf8').catch(() => null);
  if (existingDropIn !== null && !existingDropIn.startsWith(DROP_IN_MARKER)) {
    throw new Error(
      `${dropIn} exists and was not written by spark keytool install-signer-key: add LoadCredentialEncrypted=${name}:${encryptedFile} to it by hand, or remove it`,
    );
  }
  const configText = await readFile(config.file, 'utf8');
  const changed = configWithCredential(configText, config, name);
  if (changed) {
    try {
      parseConfig(changed.text, config.file);
    } catch (error) {
      if (!(error instanceof ConfigError)) throw error;
      throw new Error(`${config.file} would not check with ${changed.line}: ${error.problems.map(formatProblem).join('; ')}`);
    }
  }

  const sealWith = options.sealWith ?? (await defaultSealingKey());
  // The key goes in on stdin: what is encrypted is exactly what was checked.
  const encrypted = await systemdCreds(['encrypt', `--name=${name}`, `--with-key=${sealWith}`, '-', '-'], armored);
  if (encrypted.code !== 0) {
    throw new Error(`systemd-creds encrypt --with-key=${sealWith} failed (exit ${encrypted.code}): ${encrypted.stderr}`);
  }
  // systemd's own convention for this directory: root's alone (and the file is the creator's, root's, 0600).
  await mkdir(credstore, { recursive: true, mode: 0o700 });
  // Decrypted once before it takes the place of a credential installed before (--force).
  const sealed = await writeTemp(encryptedFile, encrypted.stdout, 0o600);
  try {
    if (!(await decryptCredential(sealed, name)).equals(armored)) {
      throw new Error(`systemd-creds: ${keyFile} encrypted decrypts to something else; nothing was installed`);
    }
    await rename(sealed, encryptedFile);
  } catch (error) {
    await rm(sealed, { force: true });
    throw error;
  }

  await mkdir(dirname(dropIn), { recursive: true, mode: 0o755 });
  await replaceFile(dropIn, dropInText(name, encryptedFile), 0o644);
  if (changed) {
    const info = await stat(config.file);
    await replaceFile(config.file, changed.text, info.mode & 0o7777, { uid: info.uid, gid: info.gid });
  }
  await host.reloadSystemd?.();
  return { fingerprint, name, sealedWith: sealWith, encryptedFile, dropIn, configChange: changed?.line ?? null };
}

/** What the operator does next, once {@link installSignerKey} is done. */
export function nextSteps(installed: InstalledSignerKey, keyFile: string): string {
  return [
    `key ${installed.fingerprint} encrypted with the ${installed.sealedWith} key as the systemd credential ${installed.name}: ${installed.encryptedFile} (root, 0600); it decrypts on this host`,
    `${installed.dropIn}: LoadCredentialEncrypted=${installed.name}:${installed.encryptedFile}`,
    installed.configChange === null
      ? 'spark.toml names the credential already'
      : `spark.toml: ${installed.configChange} (GpgSecretKeyFile commented out)`,
    'next:',
    '  systemctl restart spark-signer     # it loads the key from the credential from now on',
    `  shred -u ${keyFile}     # the key in clear; keep the copy you exported it from off this host: the credential decrypts only here`,
    '',
  ].join('\n');
}
