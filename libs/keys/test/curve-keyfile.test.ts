import assert from 'node:assert/strict';
import { mkdtemp, readFile, rm, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { createKeyFiles, formatCurveKeyFile, KeyFileError, parseCurveKeyFile, z85Decode, z85Encode } from '@spark/keys';

describe('Z85', () => {
  it('encodes and decodes the test vector of ZeroMQ RFC 32', () => {
    const bytes = Uint8Array.from([0x86, 0x4f, 0xd2, 0x6f, 0xb5, 0x59, 0xf7, 0x5b]);
    assert.equal(z85Encode(bytes), 'HelloWorld');
    assert.deepEqual(z85Decode('HelloWorld'), bytes);
  });

  it('refuses text outside the alphabet', () => {
    assert.throws(() => z85Decode('Hello Worl'), /" " is not a Z85 character/);
  });
});

describe('Laniakea key files', () => {
  it('reads back what it writes, secret and public', () => {
    const keys = {
      metadata: { id: 'worker', name: 'Spark Worker' },
      curvePublicKey: 'rq:rM>}U?@Lns47E1%kR.o@n%FcmmsL/@{H8]yf7',
      curveSecretKey: 'JTKVSB%%)wK0E.X)V>+}o?pNmC{O&4W4b!Ni{Lh6',
      edVerifyKey: null,
      edSigningKey: null,
    };
    assert.deepEqual(parseCurveKeyFile(formatCurveKeyFile(keys)), keys);
    const pub = { ...keys, curveSecretKey: null };
    assert.deepEqual(parseCurveKeyFile(formatCurveKeyFile(pub)), pub);
  });

  it('names the line of a curve key that is not Z85', () => {
    assert.throws(
      () => parseCurveKeyFile('curve\n    public-key = "short"\n'),
      (error: unknown) => error instanceof KeyFileError && /line 2: curve public-key is not a 40-character Z85 key/.test(error.message),
    );
  });

  it('creates a keypair as lk-keytool does: the secret file 0600, the public one 0644, never overwritten', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'spark-keys-'));
    try {
      const files = await createKeyFiles({ id: 'w1', name: 'Worker One', email: 'w1@example.org' }, dir);
      assert.equal((await stat(files.secretFile)).mode & 0o777, 0o600);
      assert.equal((await stat(files.publicFile)).mode & 0o777, 0o644);
      const secret = parseCurveKeyFile(await readFile(files.secretFile, 'utf8'));
      assert.equal(secret.curvePublicKey, files.curvePublicKey);
      assert.ok(secret.curveSecretKey);
      assert.equal(parseCurveKeyFile(await readFile(files.publicFile, 'utf8')).curveSecretKey, null);
      await assert.rejects(createKeyFiles({ id: 'w1', name: 'Again', email: 'w1@example.org' }, dir));
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
});
