import assert from 'node:assert/strict';
import { chmod, mkdir, mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';
import { randomQueuePrefix, runTsEntry, startRedisServer, startServiceProcess } from '@spark/testing';
import { loadSigningKey, PASSPHRASE_CREDENTIAL } from '@spark/keys/signing-key';
import { makeGpgHome, type GpgHome } from './gpg-home.js';

const main = fileURLToPath(new URL('../src/main.ts', import.meta.url));
const CREDENTIAL = 'spark-signer-key';

/*
 * The key as an encrypted systemd credential (GpgSecretKeyCredential): systemd
 * decrypts it into the unit's $CREDENTIALS_DIRECTORY, a directory of the
 * service's user alone with files of mode 0400. Here a temp directory stands
 * in for it, laid out the same way.
 */
describe('signing key from a systemd credential', () => {
  let gpg: GpgHome;
  let dir: string;
  let credentials: string;
  let plain: string;
  let armoredPlain: string;
  let isProtected: string;

  before(async () => {
    gpg = await makeGpgHome();
    dir = await mkdtemp(join(tmpdir(), 'spark-signer-credential-'));
    credentials = join(dir, 'credentials');
    plain = await gpg.generate({ uid: 'Worker <w@example.org>', algo: 'ed25519', usage: 'sign' });
    isProtected = await gpg.generate({ uid: 'Pw <pw@example.org>', algo: 'ed25519', usage: 'sign', passphrase: 'correct horse' });
    await gpg.exportSecret(plain, join(dir, 'plain.asc'));
    await gpg.exportSecret(isProtected, join(dir, 'protected.asc'), 'correct horse');
    armoredPlain = await readFile(join(dir, 'plain.asc'), 'utf8');
  });

  after(async () => {
    await gpg.close();
    await rm(dir, { recursive: true, force: true });
  });

  /** A fresh credentials directory holding `files` (name → content), each mode 0400 as systemd writes them. */
  const credentialsWith = async (files: Record<string, string>) => {
    await rm(credentials, { recursive: true, force: true });
    await mkdir(credentials, { mode: 0o700 });
    for (const [name, content] of Object.entries(files)) await writeFile(join(credentials, name), content, { mode: 0o400 });
  };

  it('loads the key from $CREDENTIALS_DIRECTORY/<GpgSecretKeyCredential>, with no key file', async () => {
    await credentialsWith({ [CREDENTIAL]: armoredPlain });
    const key = await loadSigningKey({
      keyFile: null,
      keyCredential: CREDENTIAL,
      keyId: plain,
      passphraseFile: null,
      credentialsDir: credentials,
    });
    assert.equal(key.fingerprint, plain);
    assert.equal(key.key.isDecrypted(), true);
  });

  it('unlocks a protected key credential with the passphrase credential beside it', async () => {
    await credentialsWith({
      [CREDENTIAL]: await readFile(join(dir, 'protected.asc'), 'utf8'),
      [PASSPHRASE_CREDENTIAL]: 'correct horse',
    });
    const key = await loadSigningKey({
      keyFile: null,
      keyCredential: CREDENTIAL,
      keyId: isProtected,
      passphraseFile: null,
      credentialsDir: credentials,
    });
    assert.equal(key.key.isDecrypted(), true);
  });

  describe('spark-signer with GpgSecretKeyCredential', () => {
    const writeConfig = async (redisUrl: string, prefix = randomQueuePrefix()) => {
      const config = join(dir, 'spark.toml');
      await writeFile(
        config,
        [
          `LighthouseServer = 'tcp://127.0.0.1:5570'`,
          `AcceptedJobs = ['package-build']`,
          `GpgKeyID = '${plain}'`,
          `GpgSecretKeyCredential = '${CREDENTIAL}'`,
          `WorkspaceRoot = '${join(dir, 'root')}'`,
          `RedisUrl = '${redisUrl}'`,
          `QueuePrefix = '${prefix}'`,
          '[signer]',
          `AuditLog = '${join(dir, 'audit', 'signer.log')}'`,
          'MetricsPort = 0',
        ].join('\n'),
      );
      return config;
    };

    it('starts and takes sign jobs with the key from its credentials directory, which it leaves as it was', async () => {
      const redis = await startRedisServer();
      try {
        await credentialsWith({ [CREDENTIAL]: armoredPlain });
        const config = await writeConfig(redis.url);
        const signer = startServiceProcess(main, ['--config', config], { CREDENTIALS_DIRECTORY: credentials });
        try {
          const started = await signer.waitForLine('taking sign jobs', (line) => String(line['msg']).includes('taking sign jobs'));
          assert.equal(started['fingerprint'], plain);
        } finally {
          assert.equal(await signer.stop(), 0, signer.output());
        }
        assert.doesNotMatch(signer.output(), /PRIVATE KEY|PGP/);
        assert.deepEqual(await readdir(credentials), [CREDENTIAL]);
        assert.equal(await readFile(join(credentials, CREDENTIAL), 'utf8'), armoredPlain);
      } finally {
        await redis.stop();
      }
    });

    it('exits 66 naming the credential and the drop-in to add when the unit passes no such credential', async () => {
      await credentialsWith({ [PASSPHRASE_CREDENTIAL]: 'unused' });
      const config = await writeConfig('redis://127.0.0.1:1');
      const result = await runTsEntry(main, ['--config', config], { env: { CREDENTIALS_DIRECTORY: credentials } });
      assert.equal(result.code, 66, result.stderr);
      assert.equal(
        result.stderr.trim(),
        `spark-signer: ${join(credentials, CREDENTIAL)}: secret key credential not found: the unit passes no credential ${CREDENTIAL}; ` +
          `add LoadCredentialEncrypted=${CREDENTIAL}:<encrypted file> to spark-signer.service (spark keytool install-signer-key encrypts the key and writes that drop-in)`,
      );
    });

    it('exits 78 when started without systemd credentials at all ($CREDENTIALS_DIRECTORY unset)', async () => {
      const config = await writeConfig('redis://127.0.0.1:1');
      const result = await runTsEntry(main, ['--config', config], { env: { CREDENTIALS_DIRECTORY: '' } });
      assert.equal(result.code, 78, result.stderr);
      assert.match(
        result.stderr,
        new RegExp(
          `^spark-signer: GpgSecretKeyCredential is ${CREDENTIAL}, but \\$CREDENTIALS_DIRECTORY is not set: the signer reads that credential only when systemd starts it`,
        ),
      );
    });

    it('takes a credential whose group bits show an ACL mask (0440, as systemd leaves it on tmpfs), and exits 78 when others may read it', async () => {
      const redis = await startRedisServer();
      try {
        await credentialsWith({});
        await writeFile(join(credentials, CREDENTIAL), armoredPlain, { mode: 0o440 });
        const config = await writeConfig(redis.url);
        const signer = startServiceProcess(main, ['--config', config], { CREDENTIALS_DIRECTORY: credentials });
        try {
          await signer.waitForLine('taking sign jobs', (line) => String(line['msg']).includes('taking sign jobs'));
        } finally {
          assert.equal(await signer.stop(), 0, signer.output());
        }
      } finally {
        await redis.stop();
      }
      await chmod(join(credentials, CREDENTIAL), 0o444);
      const config = await writeConfig('redis://127.0.0.1:1');
      const result = await runTsEntry(main, ['--config', config], { env: { CREDENTIALS_DIRECTORY: credentials } });
      assert.equal(result.code, 78, result.stderr);
      assert.equal(
        result.stderr.trim(),
        `spark-signer: ${join(credentials, CREDENTIAL)}: secret key credential is accessible by others (mode 0444); run: chmod o-rwx ${join(credentials, CREDENTIAL)}`,
      );
    });
  });
});
