import assert from 'node:assert/strict';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { DEFAULT_SIGNER_KEY_CREDENTIAL } from '@spark/config';
import { loadSigningKey, PASSPHRASE_CREDENTIAL } from '@spark/keys/signing-key';
import { fillCredentials, makeGpgHome, type GpgHome } from './gpg-home.js';

const CREDENTIAL = DEFAULT_SIGNER_KEY_CREDENTIAL;

/*
 * The key as an encrypted systemd credential (GpgSecretKeyCredential): systemd
 * decrypts it into the unit's $CREDENTIALS_DIRECTORY, a directory of the
 * service's user alone with files of mode 0400. Here a temp directory stands
 * in for it, laid out the same way. main.test.ts starts the signer with one.
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

  const credentialsWith = (files: Record<string, string>) => fillCredentials(credentials, files);

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
});
