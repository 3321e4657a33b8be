import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { chmod, mkdtemp, readdir, readFile, rename, rm, stat, symlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';
import { Queue } from 'bullmq';
import { DEFAULT_SIGNER_KEY_CREDENTIAL } from '@spark/config';
import { QueueName, stageJobId } from '@spark/protocol';
import { freePort, nodeEntryArgs, randomQueuePrefix, runTsEntry, startRedisServer, startServiceProcess, waitFor } from '@spark/testing';
import { PASSPHRASE_CREDENTIAL } from '@spark/keys/signing-key';
import { fillCredentials, makeGpgHome, type GpgHome } from './gpg-home.js';

const main = fileURLToPath(new URL('../src/main.ts', import.meta.url));
const seed = fileURLToPath(new URL('../../../libs/config/test/fixtures/seed-spark.toml', import.meta.url));

/**
 * Writes `<dir>/spark.toml` for a signer that signs with `gpgKeyId`, its
 * secret key in `<dir>/worker_secret.gpg`, its workspace under `<dir>/root`,
 * using the Redis at `redisUrl` with `prefix` (default a random one);
 * `signer` holds the lines of its `[signer]` table. Returns the file's path.
 */
async function writeSignerConfig(
  dir: string,
  options: { gpgKeyId: string; redisUrl: string; prefix?: string; signer?: string[] },
): Promise<string> {
  const config = join(dir, 'spark.toml');
  await writeFile(
    config,
    [
      `LighthouseServer = 'tcp://127.0.0.1:5570'`,
      `AcceptedJobs = ['package-build']`,
      `GpgKeyID = '${options.gpgKeyId}'`,
      `GpgSecretKeyFile = '${join(dir, 'worker_secret.gpg')}'`,
      `WorkspaceRoot = '${join(dir, 'root')}'`,
      `RedisUrl = '${options.redisUrl}'`,
      `QueuePrefix = '${options.prefix ?? randomQueuePrefix()}'`,
      ...(options.signer ? ['[signer]', ...options.signer] : []),
    ].join('\n'),
  );
  return config;
}

describe('spark-signer', () => {
  it('answers --version and --help with exit 0 without a config or Redis', async () => {
    const version = await runTsEntry(main, ['--version']);
    assert.equal(version.code, 0, version.stderr);
    assert.match(version.stdout, /^spark-signer 0\.1\.0( \(commit [0-9a-f]{40}\))?\n$/);
    const help = await runTsEntry(main, ['--help']);
    assert.equal(help.code, 0, help.stderr);
    assert.match(help.stdout, /^ {2}CREDENTIALS_DIRECTORY +set by systemd/m);
    assert.match(help.stdout, /^ {2}66 +the config file or a key file is missing/m);
  });

  it('exits 64 on a stray argument', async () => {
    const result = await runTsEntry(main, ['sign-now']);
    assert.equal(result.code, 64);
    assert.match(result.stderr, /^spark-signer: Unexpected argument 'sign-now'/);
  });

  it('refuses to start, exit 78, on the seed config, which names no secret key file', async () => {
    const result = await runTsEntry(main, ['--config', seed]);
    assert.equal(result.code, 78, result.stderr);
    assert.match(
      result.stderr,
      /^spark-signer: neither GpgSecretKeyFile nor GpgSecretKeyCredential is set: the signer needs the armored secret key/m,
    );
  });

  it('exits 66 naming the file when the config is missing, 78 for a bad SPARK_LOG_LEVEL', async () => {
    const result = await runTsEntry(main, ['--config', '/nonexistent/spark.toml']);
    assert.equal(result.code, 66);
    assert.equal(result.stderr, '/nonexistent/spark.toml: cannot read config: file not found\n');
    const level = await runTsEntry(main, ['--config', seed], { env: { SPARK_LOG_LEVEL: 'verbose' } });
    assert.equal(level.code, 78);
    assert.equal(
      level.stderr,
      'spark-signer: SPARK_LOG_LEVEL="verbose" is not a log level; use one of fatal, error, warn, info, debug, trace, silent\n',
    );
  });

  it('starts with a valid key, logs its fingerprint but no key material, and stops on SIGTERM with exit 0', async () => {
    const redis = await startRedisServer();
    const gpg = await makeGpgHome();
    const dir = await mkdtemp(join(tmpdir(), 'spark-signer-main-'));
    try {
      const fingerprint = await gpg.generate({ uid: 'Worker <w@example.org>', algo: 'ed25519', usage: 'sign' });
      await gpg.exportSecret(fingerprint, join(dir, 'worker_secret.gpg'));
      const config = await writeSignerConfig(dir, { gpgKeyId: fingerprint.slice(-16), redisUrl: redis.url });
      const audit = join(dir, 'root', 'audit', 'signer.log');
      const child = spawn(process.execPath, [...nodeEntryArgs(main), '--config', config], {
        stdio: ['ignore', 'pipe', 'pipe'],
      });
      let stdout = '';
      let stderr = '';
      child.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
      const exited = new Promise<number | null>((resolve) => child.on('close', (code) => resolve(code)));
      await new Promise<void>((resolve, reject) => {
        const timer = setTimeout(() => reject(new Error(`spark-signer did not start: ${stderr}`)), 20_000);
        child.stdout.on('data', (chunk: Buffer) => {
          stdout += chunk.toString();
          if (stdout.includes('taking sign jobs')) {
            clearTimeout(timer);
            resolve();
          }
        });
      });
      // SIGHUP: the signer keeps running and names the key it would only take on a restart.
      await writeFile(config, `${await readFile(config, 'utf8')}\n[signer]\nMetricsPort = 0\n`);
      child.kill('SIGHUP');
      await waitFor('the reload message', () => stdout.includes('apply only after a restart'), { timeoutMs: 20_000 });
      assert.match(stdout, /"keys":\["\[signer\] MetricsPort"\]/);
      assert.equal(child.exitCode, null, 'still running');
      child.kill('SIGTERM');
      assert.equal(await exited, 0, stderr);
      const started = stdout.split('\n').find((line) => line.includes('taking sign jobs')) ?? '';
      assert.equal((JSON.parse(started) as { fingerprint: string }).fingerprint, fingerprint);
      assert.doesNotMatch(stdout + stderr, /PRIVATE KEY|PGP/);
      assert.match(stdout, /"msg":"stopped"/);
      assert.equal((await stat(audit)).mode & 0o777, 0o600);
    } finally {
      await rm(dir, { recursive: true, force: true });
      await gpg.close();
      await redis.stop();
    }
  });
  it('reopens its audit log on SIGHUP, as log rotation needs, and keeps the old file when the path is not safe', async () => {
    const redis = await startRedisServer();
    const gpg = await makeGpgHome();
    const dir = await mkdtemp(join(tmpdir(), 'spark-signer-rotate-'));
    const prefix = randomQueuePrefix();
    const signQueue = new Queue(QueueName.sign, { connection: { host: '127.0.0.1', port: redis.port }, prefix });
    let service: ReturnType<typeof startServiceProcess> | null = null;
    try {
      const fingerprint = await gpg.generate({ uid: 'Worker <w@example.org>', algo: 'ed25519', usage: 'sign' });
      await gpg.exportSecret(fingerprint, join(dir, 'worker_secret.gpg'));
      const config = await writeSignerConfig(dir, { gpgKeyId: fingerprint, redisUrl: redis.url, prefix, signer: ['MetricsPort = 0'] });
      const logs = join(dir, 'logs');
      const audit = join(logs, 'signer.log');
      // The audit log's default place under systemd's LogsDirectory= (spark-signer.service).
      service = startServiceProcess(main, ['--config', config], { LOGS_DIRECTORY: logs });
      const signer = service;
      await signer.waitForLine('taking sign jobs', (line) => String(line['msg']).includes('taking sign jobs'));
      // A sign job with no manifest: refused, one audit line naming its job.
      const refuse = async () => {
        const uuid = randomUUID();
        await signQueue.add(QueueName.sign, {}, { jobId: stageJobId({ uuid, round: '1' }, 'sign') });
        return uuid;
      };
      const linesOf = async (file: string) =>
        (await readFile(file, 'utf8'))
          .split('\n')
          .filter(Boolean)
          .map((line) => (JSON.parse(line) as { uuid: string }).uuid);
      const auditHolds = (uuid: string) => async () => (await linesOf(audit).catch((): string[] => [])).includes(uuid);
      const options = { timeoutMs: 20_000, detail: () => signer.output() };

      const first = await refuse();
      await waitFor('the first audit line', auditHolds(first), options);
      // What logrotate does: rename the file, then `systemctl reload spark-signer` (SIGHUP).
      await rename(audit, `${audit}.1`);
      const seen = signer.lines.length;
      signer.signal('SIGHUP');
      await signer.waitForLine('the reopen', (line) => String(line['msg']).startsWith('SIGHUP: reopened the audit log'), 20_000, seen);
      const second = await refuse();
      await waitFor('the second audit line in the new file', auditHolds(second), options);
      assert.deepEqual(await linesOf(`${audit}.1`), [first], 'the rotated file keeps what was written before');
      assert.deepEqual(await linesOf(audit), [second]);
      assert.equal((await stat(audit)).mode & 0o777, 0o600);

      // A path the signer must not write through: it says so and keeps the file it has.
      await rename(audit, `${audit}.2`);
      await symlink(join(dir, 'elsewhere.log'), audit);
      const before = signer.lines.length;
      signer.signal('SIGHUP');
      const refused = await signer.waitForLine(
        'the refused reopen',
        (line) => String(line['msg']).includes('is a symbolic link; refusing to write through it'),
        20_000,
        before,
      );
      assert.equal(refused['level'], 50);
      assert.match(String(refused['msg']), /audit lines still go to the file opened before/);
      const third = await refuse();
      await waitFor('the third audit line in the file opened before', async () => (await linesOf(`${audit}.2`)).includes(third), options);
      await assert.rejects(stat(join(dir, 'elsewhere.log')), { code: 'ENOENT' });
      assert.equal(signer.exitCode(), undefined, 'still running');
      assert.equal(await signer.stop(), 0, signer.output());
    } finally {
      await service?.stop();
      await signQueue.close();
      await rm(dir, { recursive: true, force: true });
      await gpg.close();
      await redis.stop();
    }
  });

  it('says at start that its unit lets only localhost reach a metrics endpoint off loopback, and serves it', async () => {
    const redis = await startRedisServer();
    const gpg = await makeGpgHome();
    const dir = await mkdtemp(join(tmpdir(), 'spark-signer-metrics-'));
    try {
      const fingerprint = await gpg.generate({ uid: 'Worker <w@example.org>', algo: 'ed25519', usage: 'sign' });
      await gpg.exportSecret(fingerprint, join(dir, 'worker_secret.gpg'));
      const port = await freePort();
      const config = await writeSignerConfig(dir, {
        gpgKeyId: fingerprint.slice(-16),
        redisUrl: redis.url,
        signer: [`MetricsPort = ${port}`, `MetricsListen = '0.0.0.0'`],
      });
      const service = startServiceProcess(main, ['--config', config]);
      try {
        await service.waitForLine('the start', (line) => String(line['msg']).includes('taking sign jobs'));
        const note = await service.waitForLine('the note on the unit', (line) => String(line['msg']).includes('IPAddressDeny=any'));
        assert.equal(
          note['msg'],
          `metrics: spark-signer.service lets the signer exchange packets with localhost only (IPAddressDeny=any, IPAddressAllow=localhost): a Prometheus server on another host reaches http://0.0.0.0:${port}/metrics only once a drop-in allows its address (systemctl edit spark-signer.service: [Service] IPAddressAllow=<its address>)`,
        );
        const scrape = await fetch(`http://127.0.0.1:${port}/metrics`);
        assert.match(await scrape.text(), /^spark_build_info\{version="0\.1\.0",node="[0-9.]+",service="signer"\} 1$/m);
        assert.equal(await service.stop(), 0, service.output());
      } finally {
        if (service.exitCode() === undefined) service.signal('SIGKILL');
      }
    } finally {
      await rm(dir, { recursive: true, force: true });
      await gpg.close();
      await redis.stop();
    }
  });
});

/*
 * The signer started with its key as an encrypted systemd credential
 * (GpgSecretKeyCredential); a temp directory stands in for
 * $CREDENTIALS_DIRECTORY, laid out as systemd lays it out (key-credential.test.ts
 * loads keys from one).
 */
const CREDENTIAL = DEFAULT_SIGNER_KEY_CREDENTIAL;

describe('spark-signer with GpgSecretKeyCredential', () => {
  let gpg: GpgHome;
  let dir: string;
  let credentials: string;
  let plain: string;
  let armoredPlain: string;

  before(async () => {
    gpg = await makeGpgHome();
    dir = await mkdtemp(join(tmpdir(), 'spark-signer-credential-'));
    credentials = join(dir, 'credentials');
    plain = await gpg.generate({ uid: 'Worker <w@example.org>', algo: 'ed25519', usage: 'sign' });
    await gpg.exportSecret(plain, join(dir, 'plain.asc'));
    armoredPlain = await readFile(join(dir, 'plain.asc'), 'utf8');
  });

  after(async () => {
    await gpg.close();
    await rm(dir, { recursive: true, force: true });
  });

  const credentialsWith = (files: Record<string, string>) => fillCredentials(credentials, files);

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
