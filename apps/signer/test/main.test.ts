import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdtemp, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';
import { randomQueuePrefix, runTsEntry, startRedisServer, waitFor } from '@spark/testing';
import { makeGpgHome } from './gpg-home.js';

const main = fileURLToPath(new URL('../src/main.ts', import.meta.url));
const seed = fileURLToPath(new URL('../../../libs/config/test/fixtures/seed-spark.toml', import.meta.url));

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
    assert.match(result.stderr, /^spark-signer: GpgSecretKeyFile is not set: the signer needs the armored secret key/m);
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
      const config = join(dir, 'spark.toml');
      const audit = join(dir, 'root', 'audit', 'signer.log');
      await writeFile(
        config,
        [
          `LighthouseServer = 'tcp://127.0.0.1:5570'`,
          `AcceptedJobs = ['package-build']`,
          `GpgKeyID = '${fingerprint.slice(-16)}'`,
          `GpgSecretKeyFile = '${join(dir, 'worker_secret.gpg')}'`,
          `WorkspaceRoot = '${join(dir, 'root')}'`,
          `RedisUrl = '${redis.url}'`,
          `QueuePrefix = '${randomQueuePrefix()}'`,
        ].join('\n'),
      );
      const child = spawn(process.execPath, ['--conditions=@spark/source', '--import', 'tsx', main, '--config', config], {
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
});
