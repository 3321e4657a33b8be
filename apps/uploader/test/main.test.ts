import assert from 'node:assert/strict';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';
import { randomQueuePrefix, runTsEntry, startRedisServer, startServiceProcess, type RedisServer } from '@spark/testing';

const main = fileURLToPath(new URL('../src/main.ts', import.meta.url));

describe('spark-uploader main', () => {
  let dir: string;
  let redis: RedisServer;
  const toml = (redisUrl: string, extra = '') =>
    `LighthouseServer = 'tcp://127.0.0.1:5570'\nAcceptedJobs = ['package-build']\nGpgKeyID = 'DEADBEEF'\nWorkspaceRoot = '${join(dir, 'root')}'\nRedisUrl = '${redisUrl}'\nQueuePrefix = '${randomQueuePrefix()}'\n[uploader]\nMetricsPort = 0\n${extra}`;

  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'spark-uploader-main-'));
    redis = await startRedisServer();
  });
  after(async () => {
    await redis.stop();
    await rm(dir, { recursive: true, force: true });
  });

  it('answers --version and --help with exit 0 without a config or Redis', async () => {
    const version = await runTsEntry(main, ['--version', '--config', '/nonexistent/spark.toml']);
    assert.equal(version.code, 0, version.stderr);
    assert.match(version.stdout, /^spark-uploader 0\.1\.0( \(commit [0-9a-f]{40}\))?\n$/);
    const help = await runTsEntry(main, ['-h']);
    assert.equal(help.code, 0, help.stderr);
    assert.match(help.stdout, /^usage: spark-uploader \[--config FILE\]$/m);
    assert.match(help.stdout, /^ {2}SSL_CERT_FILE +CA bundle/m);
    assert.match(help.stdout, /^ {2}SPARK_LOG_LEVEL /m);
    assert.match(help.stdout, /^ {2}SPARK_LOG_FORMAT +log lines, text or json/m);
  });

  it('exits 66 naming the file when the config is missing', async () => {
    const result = await runTsEntry(main, ['--config', '/nonexistent/spark.toml']);
    assert.equal(result.code, 66);
    assert.equal(result.stderr, '/nonexistent/spark.toml: cannot read config: file not found\n');
  });

  it('exits 78 when the config does not check, SPARK_LOG_LEVEL is no level or SPARK_LOG_FORMAT no format', async () => {
    const bad = join(dir, 'bad.toml');
    await writeFile(bad, toml(redis.url, "GiveUpAfter = 'soon'\n"));
    const result = await runTsEntry(main, ['--config', bad]);
    assert.equal(result.code, 78);
    assert.match(result.stderr, /^\S+bad\.toml:\d+: uploader\.GiveUpAfter: .+\n$/);

    const good = join(dir, 'good.toml');
    await writeFile(good, toml(redis.url));
    const level = await runTsEntry(main, ['--config', good], { env: { SPARK_LOG_LEVEL: 'loud' } });
    assert.equal(level.code, 78);
    assert.equal(
      level.stderr,
      'spark-uploader: SPARK_LOG_LEVEL="loud" is not a log level; use one of fatal, error, warn, info, debug, trace, silent\n',
    );
    const format = await runTsEntry(main, ['--config', good], { env: { SPARK_LOG_FORMAT: 'logfmt' } });
    assert.equal(format.code, 78);
    assert.equal(format.stderr, 'spark-uploader: SPARK_LOG_FORMAT="logfmt" is not a log format; use one of text, json\n');
  });

  it('exits 69 when Redis does not answer at start', { timeout: 60_000 }, async () => {
    const config = join(dir, 'away.toml');
    await writeFile(config, toml('redis://127.0.0.1:1'));
    const result = await runTsEntry(main, ['--config', config]);
    assert.equal(result.code, 69, result.stdout + result.stderr);
    assert.match(result.stdout, /"msg":"cannot reach Redis at start: Redis not ready after 10000 ms[^"]*; exiting \(69\)"/);
  });

  it('on SIGHUP keeps running, names the keys that need a restart, applies LogLevel', { timeout: 60_000 }, async () => {
    const config = join(dir, 'spark.toml');
    await writeFile(config, toml(redis.url));
    const service = startServiceProcess(main, ['--config', config]);
    try {
      await service.waitForLine('the start', (l) => l['msg'] === 'uploader started: taking upload jobs');
      await writeFile(config, `LogLevel = 'warn'\n${toml(redis.url, 'GiveUpAfter = 60\nConnectTimeout = 5\n')}`);
      service.signal('SIGHUP');
      const restart = await service.waitForLine('the restart-only keys', (l) => Array.isArray(l['keys']));
      // QueuePrefix is random per toml(): it changed too.
      assert.deepEqual(restart['keys'], ['QueuePrefix', '[uploader] ConnectTimeout', '[uploader] GiveUpAfter']);
      assert.ok(service.lines.some((l) => l['msg'] === 'SIGHUP: applied LogLevel = warn'));
      // At warn, the info line of a second reload is not written, the warning is.
      const seen = service.lines.length;
      service.signal('SIGHUP');
      await service.waitForLine('the second reload', (l) => Array.isArray(l['keys']), 10_000, seen);
      assert.equal(service.exitCode(), undefined, 'still running');
      assert.equal(await service.stop(), 0, service.output());
      assert.ok(!service.lines.slice(seen).some((l) => l['level'] === 30), 'no info line after LogLevel = warn');
    } finally {
      if (service.exitCode() === undefined) service.signal('SIGKILL');
    }
  });
});
