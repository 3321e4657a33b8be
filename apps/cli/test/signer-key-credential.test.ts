/*
 * `spark keytool install-signer-key` and the `spark verify` checks of the
 * signer's key as an encrypted systemd credential, with the real
 * systemd-creds. Its host key is a temp file here ($SYSTEMD_CREDENTIAL_SECRET,
 * which systemd-creds reads instead of /var/lib/systemd/credential.secret and
 * makes when missing), so the test leaves the host's own key alone; the
 * credential store and the unit directory are temp directories too.
 */
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { chmod, mkdir, mkdtemp, readFile, rename, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, beforeEach, describe, it } from 'node:test';
import { promisify } from 'node:util';
import { loadConfig } from '@spark/config';
import { openpgp } from '@spark/keys/openpgp';
import { runKeytool } from '../src/keytool/keytool-cli.js';
import { findCredentialDropIn } from '../src/keytool/signer-key-credential.js';
import type { SignerKeyHost } from '../src/keytool/install-signer-key.js';
import { AccountBook } from '../src/verify/host-accounts.js';
import { checkSigningKey } from '../src/verify/signer-key-check.js';
import { ROOT_ACCOUNTS } from './root-accounts.js';
import { runSpark } from './run-spark.js';

const run = promisify(execFile);
const NAME = 'spark-signer-key';

async function armoredKey(name: string): Promise<{ armored: string; fingerprint: string }> {
  const { privateKey } = await openpgp.generateKey({
    type: 'ecc',
    curve: 'ed25519Legacy',
    userIDs: [{ name, email: `${name.toLowerCase()}@example.org` }],
    format: 'armored',
  });
  return { armored: privateKey, fingerprint: (await openpgp.readPrivateKey({ armoredKey: privateKey })).getFingerprint().toUpperCase() };
}

describe('the signer key as an encrypted systemd credential', { timeout: 120_000 }, () => {
  let dir: string;
  let configFile: string;
  let keyFile: string;
  let credstore: string;
  let unitDir: string;
  let reloads: number;
  let host: SignerKeyHost;
  let key: { armored: string; fingerprint: string };
  let other: { armored: string; fingerprint: string };
  const encrypted = () => join(credstore, NAME);
  const dropIn = () => join(unitDir, 'spark-signer.service.d', 'key-credential.conf');
  const keytool = (...args: string[]) => runSpark((io) => runKeytool(['install-signer-key', '--config', configFile, ...args], io, host));
  const verifyKey = async (isRoot = true) =>
    checkSigningKey(
      loadConfig(configFile).config,
      isRoot,
      { book: new AccountBook(), names: ROOT_ACCOUNTS },
      {
        unitDirs: [unitDir],
        credstoreDir: credstore,
      },
    );

  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'spark-signer-credential-'));
    process.env['SYSTEMD_CREDENTIAL_SECRET'] = join(dir, 'credential.secret');
    key = await armoredKey('Hydrogen');
    other = await armoredKey('Other');
  });

  after(async () => {
    delete process.env['SYSTEMD_CREDENTIAL_SECRET'];
    await rm(dir, { recursive: true, force: true });
  });

  beforeEach(async () => {
    for (const sub of ['keys', 'credstore', 'units']) await rm(join(dir, sub), { recursive: true, force: true });
    await mkdir(join(dir, 'keys'));
    keyFile = join(dir, 'keys', 'hydrogen_secret.gpg');
    credstore = join(dir, 'credstore');
    unitDir = join(dir, 'units');
    reloads = 0;
    host = { credstoreDir: credstore, unitDir, reloadSystemd: () => Promise.resolve(void reloads++) };
    await writeFile(keyFile, key.armored, { mode: 0o600 });
    configFile = join(dir, 'spark.toml');
    await writeFile(
      configFile,
      `LighthouseServer = 'tcp://127.0.0.1:5570'
AcceptedJobs = ['package-build']
GpgKeyID = '${key.fingerprint}'
GpgSecretKeyFile = '${keyFile}'
WorkspaceRoot = '${join(dir, 'root')}'

[signer]
MetricsPort = 0
`,
    );
    await chmod(configFile, 0o644);
  });

  it('encrypts the key (root-only file), writes the drop-in, names the credential in spark.toml, and says to shred the clear file', async () => {
    const result = await keytool('--with-key=host');
    assert.equal(result.code, 0, result.stderr);
    assert.equal(
      result.stdout,
      [
        `key ${key.fingerprint} encrypted with the host key as the systemd credential ${NAME}: ${encrypted()} (root, 0600); it decrypts on this host`,
        `${dropIn()}: LoadCredentialEncrypted=${NAME}:${encrypted()}`,
        `spark.toml: GpgSecretKeyCredential = '${NAME}' (GpgSecretKeyFile commented out)`,
        'next:',
        '  systemctl restart spark-signer     # it loads the key from the credential from now on',
        `  shred -u ${keyFile}     # the key in clear; keep the copy you exported it from off this host: the credential decrypts only here`,
        '',
      ].join('\n'),
    );
    const info = await stat(encrypted());
    assert.equal(info.mode & 0o777, 0o600);
    assert.equal((await stat(credstore)).mode & 0o777, 0o700);
    const sealed = await readFile(encrypted(), 'utf8');
    assert.doesNotMatch(sealed, /PGP|PRIVATE/);
    // The real round trip, as systemd does it when it starts the signer.
    const { stdout } = await run('systemd-creds', ['decrypt', `--name=${NAME}`, encrypted(), '-']);
    assert.equal(stdout, key.armored);
    // A credential is bound to its name: under another, systemd refuses it.
    await assert.rejects(run('systemd-creds', ['decrypt', '--name=another-name', encrypted(), '-']));
    assert.match(await readFile(dropIn(), 'utf8'), new RegExp(`^\\[Service\\]\\nLoadCredentialEncrypted=${NAME}:${encrypted()}\\n$`, 'm'));
    assert.equal(reloads, 1);
    const { config } = loadConfig(configFile);
    assert.equal(config.gpgSecretKeyFile, null);
    assert.equal(config.gpgSecretKeyCredential, NAME);
    assert.match(await readFile(configFile, 'utf8'), new RegExp(`^# GpgSecretKeyFile = '${keyFile}'$`, 'm'));
    assert.equal((await stat(configFile)).mode & 0o777, 0o644);
    // The clear file is the operator's to shred: left as it was.
    assert.equal(await readFile(keyFile, 'utf8'), key.armored);
  });

  it('refuses a key that is not GpgKeyID, exit 78, and writes nothing', async () => {
    const wrong = join(dir, 'keys', 'other_secret.gpg');
    await writeFile(wrong, other.armored, { mode: 0o600 });
    const result = await keytool('--with-key=host', wrong);
    assert.equal(result.code, 78);
    assert.equal(
      result.stderr,
      `spark keytool install-signer-key: ${wrong}: holds key ${other.fingerprint}, which is not GpgKeyID ${key.fingerprint}; nothing was installed\n`,
    );
    await assert.rejects(stat(credstore), { code: 'ENOENT' });
    await assert.rejects(stat(dropIn()), { code: 'ENOENT' });
    assert.match(await readFile(configFile, 'utf8'), /^GpgSecretKeyFile = /m);
  });

  it('replaces an installed credential only with --force, and takes an unknown --with-key as a usage error', async () => {
    assert.equal((await keytool('--with-key=host')).code, 0);
    const again = await keytool('--with-key=host', keyFile);
    assert.equal(again.code, 1);
    assert.equal(again.stderr, `spark keytool install-signer-key: ${encrypted()} exists: pass --force to replace the key it holds\n`);
    const forced = await keytool('--with-key=host', '--force', keyFile);
    assert.equal(forced.code, 0, forced.stderr);
    assert.match(forced.stdout, /\nspark\.toml names the credential already\n/);
    const weak = await keytool('--with-key=tpm2-absent');
    assert.equal(weak.code, 64);
    assert.match(weak.stderr, /--with-key takes host, tpm2, host\+tpm2, not "tpm2-absent"/);
  });

  it('leaves a drop-in of that name written by hand alone, and installs nothing', async () => {
    await mkdir(join(unitDir, 'spark-signer.service.d'), { recursive: true });
    await writeFile(dropIn(), '[Service]\nLoadCredential=other:/x\n');
    const result = await keytool('--with-key=host');
    assert.equal(result.code, 1);
    assert.equal(
      result.stderr,
      `spark keytool install-signer-key: ${dropIn()} exists and was not written by spark keytool install-signer-key: add LoadCredentialEncrypted=${NAME}:${encrypted()} to it by hand, or remove it\n`,
    );
    await assert.rejects(stat(encrypted()), { code: 'ENOENT' });
    assert.equal(await readFile(dropIn(), 'utf8'), '[Service]\nLoadCredential=other:/x\n');
  });

  it('spark verify says the key is the credential, and checks the drop-in, the file and what it decrypts to', async () => {
    assert.equal((await keytool('--with-key=host')).code, 0);
    await rm(keyFile);
    let results = await verifyKey();
    assert.deepEqual(
      results.map((r) => [r.check, r.status]),
      [
        ['OpenPGP key credential', 'ok'],
        ['OpenPGP key', 'ok'],
      ],
    );
    assert.equal(results[0]?.message, `${encrypted()}: root:root 0600; passed by ${dropIn()}`);
    assert.equal(
      results[1]?.message,
      `${key.fingerprint} is GpgKeyID ${key.fingerprint} and can sign; installed as the encrypted systemd credential ${NAME} (${encrypted()}), in clear only in the signer's credentials directory`,
    );

    // Not root: the file is looked at, not decrypted.
    results = await verifyKey(false);
    assert.deepEqual(results[1], {
      check: 'OpenPGP key',
      status: 'skipped',
      skipped: 'not-root',
      message: `only root can decrypt ${encrypted()}`,
    });

    await chmod(encrypted(), 0o644);
    results = await verifyKey();
    assert.equal(results[0]?.status, 'problem');
    assert.match(results[0]?.message ?? '', new RegExp(`mode 0644, should be 0600; run: chmod 0600 ${encrypted()}`));
    await chmod(encrypted(), 0o600);

    // Sealed with another host key (another machine's): it does not decrypt here.
    const text = await readFile(encrypted(), 'utf8');
    await rename(join(dir, 'credential.secret'), join(dir, 'credential.secret.mine'));
    try {
      results = await verifyKey();
    } finally {
      await rename(join(dir, 'credential.secret.mine'), join(dir, 'credential.secret'));
    }
    assert.equal(results[1]?.status, 'problem');
    assert.match(
      results[1]?.message ?? '',
      new RegExp(
        `^systemd-creds decrypt ${encrypted()} failed \\(exit \\d+\\): .*encrypt the key again on this host: spark keytool install-signer-key --force FILE$`,
        's',
      ),
    );
    assert.equal(await readFile(encrypted(), 'utf8'), text);

    await rm(dropIn());
    results = await verifyKey();
    assert.deepEqual(
      results.map((r) => [r.check, r.status]),
      [
        ['OpenPGP key credential', 'problem'],
        ['OpenPGP key', 'skipped'],
      ],
    );
    assert.equal(
      results[0]?.message,
      `GpgSecretKeyCredential is ${NAME}, but no drop-in of spark-signer.service passes it (LoadCredentialEncrypted=${NAME}:FILE): run spark keytool install-signer-key`,
    );
  });

  it('spark verify says the key is a file in clear while GpgSecretKeyFile names it', async () => {
    const results = await verifyKey();
    assert.equal(results.length, 1);
    assert.equal(
      results[0]?.message,
      `${key.fingerprint} is GpgKeyID ${key.fingerprint} and can sign; installed as the file ${keyFile}, in clear on disk (spark keytool install-signer-key makes it an encrypted systemd credential)`,
    );
  });
});

describe('the drop-in that passes the key credential', () => {
  it('is found as systemd reads drop-ins: by file name across directories, the earlier directory hiding a same-named one', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'spark-drop-ins-'));
    try {
      const dirs = ['etc', 'run', 'lib'].map((name) => join(dir, name));
      const dropIns = (name: string) => join(dir, name, 'spark-signer.service.d');
      const [etc, run, lib] = [dropIns('etc'), dropIns('run'), dropIns('lib')];
      for (const d of [etc, run, lib]) await mkdir(d, { recursive: true });
      assert.equal(await findCredentialDropIn(dirs, NAME, '/store'), null);
      // A name without a path is looked up in the credential store, as systemd does.
      await writeFile(join(lib, 'key-credential.conf'), `[Service]\nLoadCredentialEncrypted=${NAME}\n`);
      assert.deepEqual(await findCredentialDropIn(dirs, NAME, '/store'), {
        dropIn: join(lib, 'key-credential.conf'),
        file: `/store/${NAME}`,
      });
      // The same file name in /etc hides the one in /usr/lib; another credential's line is not this one.
      await writeFile(join(etc, 'key-credential.conf'), `[Service]\nLoadCredentialEncrypted=other:/x\n`);
      assert.equal(await findCredentialDropIn(dirs, NAME, '/store'), null);
      // A later file name says the last word.
      await writeFile(join(run, 'zz-override.conf'), `[Service]\nLoadCredentialEncrypted=${NAME}:/elsewhere/key\n`);
      assert.deepEqual(await findCredentialDropIn(dirs, NAME, '/store'), {
        dropIn: join(run, 'zz-override.conf'),
        file: '/elsewhere/key',
      });
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
});
