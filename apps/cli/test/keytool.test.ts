import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { mkdtemp, readFile, rm, stat, writeFile, chmod } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { promisify } from 'node:util';
import { parseCurveKeyFile } from '@spark/keys';
import { runSpark } from './run-spark.js';

const run = promisify(execFile);
// Debian's python3 with python3-zmq, not whatever python3 comes first on PATH.
const PYTHON = '/usr/bin/python3';

describe('spark keytool', () => {
  let dir: string;
  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'spark-keytool-'));
  });
  after(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  it('key-new writes ID.key and ID.key_secret (0600) in the Laniakea keyfile format', async () => {
    const out = join(dir, 'out');
    const result = await runSpark([
      'keytool',
      'key-new',
      '--id=hydrogen',
      '--name=Hydrogen Worker',
      '--email=hydrogen@workers.example.org',
      '--organization=Wayne Enterprises',
      out,
    ]);
    assert.equal(result.code, 0, result.stderr);
    assert.match(result.stdout, /hydrogen\.key_secret \(secret, mode 0600\)/);
    const secretText = await readFile(join(out, 'hydrogen.key_secret'), 'utf8');
    const publicText = await readFile(join(out, 'hydrogen.key'), 'utf8');
    assert.equal((await stat(join(out, 'hydrogen.key_secret'))).mode & 0o777, 0o600);
    assert.match(secretText, /^#\n# Laniakea Messaging \*\*Secret\*\* Certificate\n/);
    assert.match(publicText, /^#\n# Laniakea Messaging Public Certificate\n/);
    const secret = parseCurveKeyFile(secretText);
    const pub = parseCurveKeyFile(publicText);
    assert.deepEqual(Object.keys(secret.metadata), ['id', 'name', 'email', 'organization', 'created-by', 'date-created']);
    assert.equal(secret.metadata['name'], 'Hydrogen Worker');
    assert.equal(secret.metadata['created-by'], 'Laniakea Keytool');
    assert.equal(pub.curvePublicKey, secret.curvePublicKey);
    assert.equal(pub.curveSecretKey, null);
    assert.equal(pub.edSigningKey, null);
    assert.equal(Buffer.from(secret.edSigningKey ?? '', 'base64').length, 32);
    assert.equal(Buffer.from(pub.edVerifyKey ?? '', 'base64').length, 32);
    assert.match(publicText, /\ncurve\n {4}public-key = "[^"]{40}"\ned\n {4}verify-key = "[A-Za-z0-9+/]{43}"\n$/);
  });

  it('writes files that pyzmq zmq.auth.load_certificate reads, with matching Curve keys', async () => {
    const out = join(dir, 'py');
    assert.equal((await runSpark(['keytool', 'key-new', '--id=w1', '--name=W', '--email=w@example.org', out])).code, 0);
    const script = `import sys, zmq, zmq.auth
pub, sec = zmq.auth.load_certificate(sys.argv[1])
pub2, none = zmq.auth.load_certificate(sys.argv[2])
assert none is None and pub == pub2
assert zmq.curve_public(sec) == pub
print(pub.decode())`;
    const { stdout } = await run(PYTHON, ['-c', script, join(out, 'w1.key_secret'), join(out, 'w1.key')]);
    const keys = parseCurveKeyFile(await readFile(join(out, 'w1.key_secret'), 'utf8'));
    assert.equal(stdout.trim(), keys.curvePublicKey);
  });

  it('key-new refuses an id that is a path (exit 1) and missing options (exit 64)', async () => {
    const bad = await runSpark(['keytool', 'key-new', '--id=../evil', '--name=n', '--email=e', dir]);
    assert.equal(bad.code, 1);
    assert.match(bad.stderr, /--id "\.\.\/evil" cannot be a file name/);
    const missing = await runSpark(['keytool', 'key-new', '--id=x', dir]);
    assert.equal(missing.code, 64);
    assert.match(missing.stderr, /missing --name, --email/);
  });

  it('key-new never overwrites an existing key', async () => {
    const out = join(dir, 'twice');
    assert.equal((await runSpark(['keytool', 'key-new', '--id=a', '--name=n', '--email=e', out])).code, 0);
    const before = await readFile(join(out, 'a.key_secret'), 'utf8');
    const again = await runSpark(['keytool', 'key-new', '--id=a', '--name=n', '--email=e', out]);
    assert.equal(again.code, 1);
    assert.match(again.stderr, /a\.key_secret already exists; not overwriting it/);
    assert.equal(await readFile(join(out, 'a.key_secret'), 'utf8'), before);
  });

  it('install-worker-key and install-server-key put the keys where the config says, with the right modes', async () => {
    const keys = join(dir, 'install');
    const curveDir = join(dir, 'etc-curve');
    const config = join(dir, 'spark.toml');
    await writeFile(
      config,
      `LighthouseServer = 'tcp://127.0.0.1:5570'\nAcceptedJobs = ['package-build']\nGpgKeyID = 'DEADBEEF'\nMachineName = 'hydrogen'\nCurveKeysDir = '${curveDir}'\n`,
    );
    assert.equal((await runSpark(['keytool', 'key-new', '--id=hydrogen', '--name=n', '--email=e', keys])).code, 0);
    assert.equal((await runSpark(['keytool', 'key-new', '--id=lighthouse', '--name=n', '--email=e', keys])).code, 0);

    const worker = await runSpark(['keytool', 'install-worker-key', '--config', config, join(keys, 'hydrogen.key_secret')]);
    assert.equal(worker.code, 0, worker.stderr);
    const secretTarget = join(curveDir, 'secret', 'hydrogen-spark_private.sec');
    assert.equal(worker.stdout, `installed ${join(keys, 'hydrogen.key_secret')} as ${secretTarget} (mode 0600)\n`);
    assert.equal((await stat(secretTarget)).mode & 0o777, 0o600);
    assert.equal((await stat(join(curveDir, 'secret'))).mode & 0o777, 0o700);

    const refusedSecret = await runSpark(['keytool', 'install-server-key', '--config', config, join(keys, 'lighthouse.key_secret')]);
    assert.equal(refusedSecret.code, 1);
    assert.match(refusedSecret.stderr, /holds a secret key, which must never leave the Lighthouse host/);

    const server = await runSpark(['keytool', 'install-server-key', '--config', config, join(keys, 'lighthouse.key')]);
    assert.equal(server.code, 0, server.stderr);
    const serverTarget = join(curveDir, 'hydrogen_lighthouse-server.pub');
    assert.equal((await stat(serverTarget)).mode & 0o777, 0o644);
    assert.equal(await readFile(serverTarget, 'utf8'), await readFile(join(keys, 'lighthouse.key'), 'utf8'));

    const again = await runSpark(['keytool', 'install-worker-key', '--config', config, join(keys, 'hydrogen.key_secret')]);
    assert.equal(again.code, 1);
    assert.match(again.stderr, /already exists; not overwriting it/);
    assert.equal(
      (await runSpark(['keytool', 'install-worker-key', '--force', '--config', config, join(keys, 'hydrogen.key_secret')])).code,
      0,
    );

    const publicAsWorker = await runSpark(['keytool', 'install-worker-key', '--force', '--config', config, join(keys, 'hydrogen.key')]);
    assert.equal(publicAsWorker.code, 1);
    assert.match(publicAsWorker.stderr, /holds no Curve secret key; pass the <id>\.key_secret file/);
  });

  it('refuses a malformed key file naming the file and line', async () => {
    const bad = join(dir, 'bad.key');
    await writeFile(bad, 'curve\n    public-key = "tooshort"\n');
    await chmod(bad, 0o644);
    const result = await runSpark(['keytool', 'install-trusted-key', '--dir', join(dir, 'trusted'), 'x', bad]);
    assert.equal(result.code, 1);
    assert.equal(result.stderr, `spark keytool install-trusted-key: ${bad}: line 2: curve public-key is not a 40-character Z85 key\n`);
  });
});
