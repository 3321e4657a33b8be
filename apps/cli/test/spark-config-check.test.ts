import assert from 'node:assert/strict';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';
import { runSpark } from './run-spark.js';

const seed = fileURLToPath(new URL('../../../libs/config/test/fixtures/seed-spark.toml', import.meta.url));
const dir = mkdtempSync(join(tmpdir(), 'spark-cli-test-'));

describe('spark config check', () => {
  it('prints the effective config of the seed spark.toml as JSON, machine_id included, exit 0', async () => {
    const result = await runSpark(['config', 'check', '--config', seed]);
    assert.equal(result.code, 0, result.stderr);
    const config = JSON.parse(result.stdout) as Record<string, unknown>;
    assert.equal(config['lighthouseServer'], 'tcp://master.example.org:5570');
    assert.match(String(config['machineId']), /^[0-9a-f]{8}-[0-9a-f]{4}-5[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/);
    assert.equal(config['maxJobs'], 1);
    assert.match(result.stderr, /seed-spark\.toml:7: warning: GpgKeyID: /);
  });

  it('prints each problem with file, line and key, exit 78 (EX_CONFIG)', async () => {
    const file = join(dir, 'bad.toml');
    writeFileSync(file, "LighthouseServer = 'tcp://lh:5570'\nAcceptedJob = ['package-build']\nGpgKeyID = 'DEADBEEF'\nMaxJobs = 0\n");
    const result = await runSpark(['config', 'check', '--config', file]);
    assert.equal(result.code, 78);
    assert.equal(
      result.stderr,
      [
        `${file}:2: warning: AcceptedJob: unknown key, ignored (did you mean AcceptedJobs?)`,
        `${file}: AcceptedJobs: required key is missing`,
        `${file}:4: MaxJobs: must be between 1 and 256, got 0`,
        '',
      ].join('\n'),
    );
    assert.equal(result.stdout, '');
  });

  it('never prints a password in RedisUrl, valid or not', async () => {
    const file = join(dir, 'secret.toml');
    const base = "LighthouseServer = 'tcp://lh:5570'\nAcceptedJobs = ['package-build']\nGpgKeyID = 'DEADBEEFDEADBEEF'\n";
    writeFileSync(file, `${base}RedisUrl = 'redis://spark:s3cret-pw@127.0.0.1:6379/0'\n`);
    const valid = await runSpark(['config', 'check', '--config', file]);
    assert.equal(valid.code, 0, valid.stderr);
    assert.equal((JSON.parse(valid.stdout) as Record<string, unknown>)['redisUrl'], 'redis://spark:***@127.0.0.1:6379/0');
    writeFileSync(file, `${base}RedisUrl = 'http://spark:s3cret-pw@127.0.0.1:6379/0'\n`);
    const invalid = await runSpark(['config', 'check', '--config', file]);
    assert.equal(invalid.code, 78);
    assert.match(invalid.stderr, /RedisUrl: expected .*, got "http:\/\/\*\*\*@127\.0\.0\.1:6379\/0"/);
    for (const text of [valid.stdout, valid.stderr, invalid.stdout, invalid.stderr]) assert.ok(!text.includes('s3cret-pw'), text);
  });

  it('names a missing config file, exit 66 (EX_NOINPUT)', async () => {
    const result = await runSpark(['config', 'check', '--config', join(dir, 'absent.toml')]);
    assert.equal(result.code, 66);
    assert.match(result.stderr, /absent\.toml/);
    assert.equal(result.stdout, '');
  });

  it('prints where each service serves its metrics (MetricsListen), and refuses an address that is not one with its line, exit 78', async () => {
    const file = join(dir, 'listen.toml');
    const base = "LighthouseServer = 'tcp://lh:5570'\nAcceptedJobs = ['package-build']\nGpgKeyID = 'DEADBEEFDEADBEEF'\n";
    writeFileSync(file, `${base}MetricsListen = '0.0.0.0'\n[signer]\nMetricsListen = '127.0.0.1'\n`);
    const valid = await runSpark(['config', 'check', '--config', file]);
    assert.equal(valid.code, 0, valid.stderr);
    const config = JSON.parse(valid.stdout) as Record<string, Record<string, unknown>>;
    assert.deepEqual(
      ['connector', 'builder', 'signer', 'uploader'].map((service) => [service, config[service]?.['metricsListen']]),
      [
        ['connector', '0.0.0.0'],
        ['builder', '0.0.0.0'],
        ['signer', '127.0.0.1'],
        ['uploader', '0.0.0.0'],
      ],
    );
    writeFileSync(file, `${base}[uploader]\nMetricsListen = 'metrics.example.org'\n`);
    const invalid = await runSpark(['config', 'check', '--config', file]);
    assert.equal(invalid.code, 78);
    assert.match(
      invalid.stderr,
      /^\S+listen\.toml:5: uploader\.MetricsListen: expected an IPv4 or IPv6 address to listen on, .*got "metrics\.example\.org"; a host name is not accepted/,
    );
  });

  it('refuses an unknown command with usage, exit 64', async () => {
    const result = await runSpark(['frobnicate']);
    assert.equal(result.code, 64);
    assert.match(result.stderr, /unknown command "frobnicate"/);
  });
});
