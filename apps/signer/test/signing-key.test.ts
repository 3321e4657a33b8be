import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { existsSync } from 'node:fs';
import { chmod, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';
import * as openpgp from 'openpgp';
import { nodeFlags } from '@spark/config';
import { nodeEntryArgs, runTsEntry } from '@spark/testing';
import { loadSigningKey, PASSPHRASE_CREDENTIAL } from '@spark/keys/signing-key';
import { makeGpgHome, type GpgHome } from './gpg-home.js';

const main = fileURLToPath(new URL('../src/main.ts', import.meta.url));

/** Runs node with `flags` and `args`; its exit code and output. */
function runWithFlags(flags: readonly string[], args: string[]): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    execFile(process.execPath, [...flags, ...args], { env: { ...process.env, CREDENTIALS_DIRECTORY: '' } }, (error, stdout, stderr) =>
      resolve({ code: error ? ((error as { code?: number }).code ?? null) : 0, stdout, stderr }),
    );
  });
}

describe('signing key', () => {
  let gpg: GpgHome;
  let dir: string;
  const fpr: Record<string, string> = {};
  const file = (name: string) => join(dir, `${name}_secret.gpg`);
  const fingerprint = (name: string) => fpr[name] ?? assert.fail(`no key ${name}`);

  before(async () => {
    gpg = await makeGpgHome();
    dir = await mkdtemp(join(tmpdir(), 'spark-signer-keys-'));
    fpr['rsa'] = await gpg.generate({ uid: 'RSA Worker <rsa@example.org>', algo: 'rsa4096', usage: 'sign' });
    fpr['ed'] = await gpg.generate({ uid: 'Ed Worker <ed@example.org>', algo: 'ed25519', usage: 'sign' });
    fpr['protected'] = await gpg.generate({ uid: 'Pw <pw@example.org>', algo: 'ed25519', usage: 'sign', passphrase: 'correct horse' });
    fpr['expired'] = await gpg.generate({
      uid: 'Old <old@example.org>',
      algo: 'ed25519',
      usage: 'sign',
      expire: '1y',
      fakedTime: '20200101T000000',
    });
    fpr['revoked'] = await gpg.generate({ uid: 'Revoked <rev@example.org>', algo: 'ed25519', usage: 'sign' });
    fpr['certonly'] = await gpg.generate({ uid: 'Cert <cert@example.org>', algo: 'ed25519', usage: 'cert' });
    await gpg.revoke(fingerprint('revoked'));
    for (const name of Object.keys(fpr)) {
      await gpg.exportSecret(fingerprint(name), file(name), name === 'protected' ? 'correct horse' : '');
    }
    await writeFile(join(dir, 'passphrase'), 'correct horse\n', { mode: 0o600 });
    await writeFile(join(dir, 'wrong-passphrase'), 'battery staple\n', { mode: 0o600 });
  });

  after(async () => {
    await gpg.close();
    await rm(dir, { recursive: true, force: true });
  });

  it('loads an RSA sign-only key exported as the seed guide says, named by its fingerprint', async () => {
    const key = await loadSigningKey({ keyFile: file('rsa'), keyId: fingerprint('rsa'), passphraseFile: null });
    assert.equal(key.fingerprint, fingerprint('rsa'));
    assert.equal(key.key.isDecrypted(), true);
  });

  it('loads an Ed25519 key named by its long or short key id, with or without 0x', async () => {
    for (const keyId of [fingerprint('ed').slice(-16), fingerprint('ed').slice(-8).toLowerCase(), `0x${fingerprint('ed').slice(-16)}`]) {
      const key = await loadSigningKey({ keyFile: file('ed'), keyId, passphraseFile: null });
      assert.equal(key.fingerprint, fingerprint('ed'));
    }
  });

  it('unlocks a protected key with the passphrase file or the systemd credential', async () => {
    const fromFile = await loadSigningKey({
      keyFile: file('protected'),
      keyId: fingerprint('protected'),
      passphraseFile: join(dir, 'passphrase'),
    });
    assert.equal(fromFile.key.isDecrypted(), true);
    const credentials = await mkdtemp(join(tmpdir(), 'spark-signer-cred-'));
    try {
      await writeFile(join(credentials, PASSPHRASE_CREDENTIAL), 'correct horse', { mode: 0o400 });
      const fromCredential = await loadSigningKey({
        keyFile: file('protected'),
        keyId: fingerprint('protected'),
        passphraseFile: null,
        credentialsDir: credentials,
      });
      assert.equal(fromCredential.key.isDecrypted(), true);
    } finally {
      await rm(credentials, { recursive: true, force: true });
    }
  });

  describe('spark-signer refuses to start, exit code 66 for a missing key file and 78 for any other problem, when', () => {
    const startWith = async (keyFile: string, keyId: string, passphraseFile?: string, nodeFlags: readonly string[] = []) => {
      const config = join(dir, 'spark.toml');
      await writeFile(
        config,
        [
          `LighthouseServer = 'tcp://127.0.0.1:5570'`,
          `AcceptedJobs = ['package-build']`,
          `GpgKeyID = '${keyId}'`,
          `GpgSecretKeyFile = '${keyFile}'`,
          `WorkspaceRoot = '${join(dir, 'root')}'`,
          `RedisUrl = 'redis://127.0.0.1:1'`,
          `[signer]`,
          `AuditLog = '${join(dir, 'audit.log')}'`,
          ...(passphraseFile ? [`PassphraseFile = '${passphraseFile}'`] : []),
        ].join('\n'),
      );
      const result =
        nodeFlags.length === 0
          ? await runTsEntry(main, ['--config', config], { env: { CREDENTIALS_DIRECTORY: '' } })
          : await runWithFlags(nodeFlags, [...nodeEntryArgs(main), '--config', config]);
      assert.equal(result.code, existsSync(keyFile) ? 78 : 66, `stdout: ${result.stdout}\nstderr: ${result.stderr}`);
      return result.stderr.trim();
    };

    it("the key is protected with Argon2 and the signer runs with the services' flags, which leave out WebAssembly", async () => {
      // openpgp.js makes the key (gpg does not protect exports with Argon2), in this process, which has WebAssembly.
      const { privateKey } = await openpgp.generateKey({
        type: 'ecc',
        curve: 'ed25519Legacy',
        userIDs: [{ name: 'Argon', email: 'argon@example.org' }],
        passphrase: 'correct horse',
        config: { s2kType: openpgp.enums.s2k.argon2, aeadProtect: true },
        format: 'armored',
      });
      const fpr = (await openpgp.readPrivateKey({ armoredKey: privateKey })).getFingerprint().toUpperCase();
      const keyFile = join(dir, 'argon2_secret.gpg');
      await writeFile(keyFile, privateKey, { mode: 0o600 });
      assert.match(
        await startWith(keyFile, fpr, join(dir, 'passphrase'), nodeFlags('signer')),
        new RegExp(`^spark-signer: key ${fpr} is protected with Argon2, which openpgp.js computes in WebAssembly`),
      );
    });

    it('the key file is missing', async () => {
      const missing = join(dir, 'nope_secret.gpg');
      assert.equal(await startWith(missing, fingerprint('rsa')), `spark-signer: ${missing}: secret key file not found`);
    });

    it('the key file is readable by group or others', async () => {
      const loose = join(dir, 'loose_secret.gpg');
      await writeFile(loose, '');
      await chmod(loose, 0o644);
      assert.equal(
        await startWith(loose, fingerprint('rsa')),
        `spark-signer: ${loose}: secret key file is accessible by group or others (mode 0644); run: chmod go-rwx ${loose}`,
      );
    });

    it('the key is not GpgKeyID', async () => {
      assert.equal(
        await startWith(file('rsa'), fingerprint('ed')),
        `spark-signer: ${file('rsa')}: holds key ${fingerprint('rsa')}, which is not GpgKeyID ${fingerprint('ed')}`,
      );
    });

    it('the key has expired', async () => {
      assert.match(
        await startWith(file('expired'), fingerprint('expired')),
        new RegExp(`^spark-signer: key ${fingerprint('expired')} expired on 2020-12-31T00:00:00.000Z; extend it`),
      );
    });

    it('the key is revoked', async () => {
      assert.match(
        await startWith(file('revoked'), fingerprint('revoked')),
        new RegExp(`^spark-signer: key ${fingerprint('revoked')} is revoked`),
      );
    });

    it('the key cannot sign', async () => {
      assert.match(
        await startWith(file('certonly'), fingerprint('certonly')),
        new RegExp(`^spark-signer: key ${fingerprint('certonly')} cannot sign: `),
      );
    });

    it('the key is protected and no passphrase is configured', async () => {
      assert.match(
        await startWith(file('protected'), fingerprint('protected')),
        new RegExp(`^spark-signer: key ${fingerprint('protected')} is passphrase-protected: set \\[signer\\] PassphraseFile`),
      );
    });

    it('the passphrase is wrong', async () => {
      const wrong = join(dir, 'wrong-passphrase');
      assert.equal(
        await startWith(file('protected'), fingerprint('protected'), wrong),
        `spark-signer: ${wrong}: wrong passphrase for key ${fingerprint('protected')}`,
      );
    });
  });
});
