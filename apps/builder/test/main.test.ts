import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';
import { builderHeartbeatsKey, builderHeartbeatSchema } from '@spark/protocol';
import { connectRedis, type Redis } from '@spark/service';
import { nodeEntryArgs, randomQueuePrefix, type RedisServer, runTsEntry, startRedisServer, waitFor } from '@spark/testing';
import { testConfigToml } from './fixtures.js';

const main = fileURLToPath(new URL('../src/main.ts', import.meta.url));
/** How long the builder's main may take to start: a guard, far above what node with tsx needs on a busy machine. */
const START_GUARD_MS = 150_000;

describe('spark-builder', () => {
  let redis: RedisServer;
  let connection: Redis;
  let root: string;

  before(async () => {
    redis = await startRedisServer();
    connection = connectRedis(redis.url, 'worker');
    root = await mkdtemp(join(tmpdir(), 'spark-builder-main-'));
  });

  after(async () => {
    await connection?.quit();
    await redis?.stop();
    if (root) await rm(root, { recursive: true, force: true });
  });

  it('answers --version and --help with exit 0 without a config or Redis', async () => {
    const version = await runTsEntry(main, ['-V'], { timeoutMs: START_GUARD_MS });
    assert.equal(version.code, 0, version.stderr);
    assert.match(version.stdout, /^spark-builder 0\.1\.0( \(commit [0-9a-f]{40}\))?\n$/);
    const help = await runTsEntry(main, ['--help'], { timeoutMs: START_GUARD_MS });
    assert.equal(help.code, 0, help.stderr);
    assert.match(help.stdout, /^ {2}SPARK_BUILDER_ID +set by spark-builder@N/m);
    assert.match(help.stdout, /^ {2}SIGHUP +re-read the config file: apply LogLevel;/m);
  });

  it('exits 66 naming the file when the config is missing', async () => {
    const result = await runTsEntry(main, ['--config', '/nonexistent/spark.toml'], { timeoutMs: START_GUARD_MS });
    assert.equal(result.code, 66);
    assert.equal(result.stderr, '/nonexistent/spark.toml: cannot read config: file not found\n');
  });

  it('exits 78 when the config does not check, or SPARK_LOG_LEVEL is no level', async () => {
    const config = join(root, 'bad.toml');
    await writeFile(
      config,
      testConfigToml({ workspaceRoot: join(root, 'ws'), redisUrl: redis.url, prefix: 'p', builder: 'MaxLogSize = -5' }),
    );
    const bad = await runTsEntry(main, ['--config', config], { timeoutMs: START_GUARD_MS });
    assert.equal(bad.code, 78);
    assert.match(bad.stderr, /^\S+bad\.toml:\d+: builder\.MaxLogSize: .+\n$/);
    await writeFile(config, testConfigToml({ workspaceRoot: join(root, 'ws'), redisUrl: redis.url, prefix: 'p' }));
    const level = await runTsEntry(main, ['--config', config], { timeoutMs: START_GUARD_MS, env: { SPARK_LOG_LEVEL: 'INFO' } });
    assert.equal(level.code, 78);
    assert.equal(
      level.stderr,
      'spark-builder: SPARK_LOG_LEVEL="INFO" is not a log level; use one of fatal, error, warn, info, debug, trace, silent\n',
    );
  });

  it('starts, publishes its heartbeat, and on SIGTERM removes it and exits 0', async () => {
    const prefix = randomQueuePrefix();
    const config = join(root, 'spark.toml');
    await writeFile(config, testConfigToml({ workspaceRoot: join(root, 'ws'), redisUrl: redis.url, prefix }));
    const child = spawn(process.execPath, [...nodeEntryArgs(main), '--config', config], {
      env: { ...process.env, SPARK_BUILDER_ID: 'main-test' },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let stdout = '';
    child.stdout.on('data', (chunk: Buffer) => (stdout += chunk.toString()));
    const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
    const key = builderHeartbeatsKey(prefix);
    const raw = await waitFor('the heartbeat', () => connection.hget(key, 'main-test'), { timeoutMs: START_GUARD_MS, intervalMs: 200 });
    const heartbeat = builderHeartbeatSchema.parse(JSON.parse(raw));
    assert.deepEqual(heartbeat.kinds, ['package-build', 'os-image-build']);
    assert.equal(heartbeat.accepting, true);
    // SIGHUP re-reads the config: the builder keeps running and names what needs a restart.
    await writeFile(config, testConfigToml({ workspaceRoot: join(root, 'ws'), redisUrl: redis.url, prefix, builder: 'DrainTimeout = 5' }));
    child.kill('SIGHUP');
    await waitFor('the reload', () => stdout.includes('apply only after a restart'), {
      timeoutMs: START_GUARD_MS,
      intervalMs: 200,
    });
    assert.match(stdout, /"keys":\["\[builder\] DrainTimeout"\]/);
    assert.equal(child.exitCode, null, 'still running');
    assert.ok(await connection.hget(key, 'main-test'), 'still registered');
    child.kill('SIGTERM');
    assert.equal(await exited, 0, stdout);
    assert.equal(await connection.hget(key, 'main-test'), null);
    assert.match(stdout, /"msg":"builder started"/);
    assert.match(stdout, /"msg":"stopped"/);
  });
});
