import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { promisify } from 'node:util';
import { clearsign } from '../src/clearsign.js';
import { loadSigningKey, type SigningKey } from '@spark/keys/signing-key';
import { makeGpgHome, type GpgHome } from './gpg-home.js';

const run = promisify(execFile);

describe('clearsign', () => {
  let gpg: GpgHome;
  let dir: string;
  let keyring: string;
  let key: SigningKey;

  before(async () => {
    gpg = await makeGpgHome();
    dir = await mkdtemp(join(tmpdir(), 'spark-clearsign-'));
    const fingerprint = await gpg.generate({ uid: 'Ed Worker <ed@example.org>', algo: 'ed25519', usage: 'sign' });
    await gpg.exportSecret(fingerprint, join(dir, 'ed_secret.gpg'));
    keyring = join(dir, 'keyring.gpg');
    await gpg.exportKeyring([fingerprint], keyring);
    key = await loadSigningKey({ keyFile: join(dir, 'ed_secret.gpg'), keyId: fingerprint, passphraseFile: null });
  });

  after(async () => {
    await gpg.close();
    await rm(dir, { recursive: true, force: true });
  });

  const verify = async (signed: string): Promise<string> => {
    const file = join(dir, 'signed.asc');
    await writeFile(file, signed);
    const { stdout } = await run('gpgv', ['--keyring', keyring, '--output', '-', file]);
    return stdout;
  };

  it('writes what gpg --clearsign writes: SHA512, LF line ends, dash-escaped lines; gpgv gives back the text', async () => {
    const text = 'Format: 1.8\nChanges:\n hello (1.0) unstable; urgency=medium\n .\n-- a line starting with a dash\nFrom the start\n';
    const signed = await clearsign(text, key.key);
    assert.match(signed, /^-----BEGIN PGP SIGNED MESSAGE-----\nHash: SHA512\n\nFormat: 1\.8\n/);
    assert.ok(!signed.includes('\r'), 'no CR in the output');
    assert.ok(signed.includes('\n- -- a line starting with a dash\n'));
    assert.match(signed, /\n-----END PGP SIGNATURE-----\n$/);
    assert.equal(await verify(signed), text);
  });

  it('replaces an existing signature instead of signing the signed file', async () => {
    const text = 'Format: 1.8\nFiles:\n 0123 4 spark spark x.log\n';
    const twice = await clearsign(await clearsign(text, key.key), key.key);
    assert.equal(twice.split('-----BEGIN PGP SIGNED MESSAGE-----').length, 2);
    assert.equal(await verify(twice), text);
  });
});
