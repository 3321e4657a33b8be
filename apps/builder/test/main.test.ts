import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';
import { builderHeartbeatsKey, builderHeartbeatSchema } from '@spark/protocol';
import { connectRedis, type Redis } from '@spark/service';
import { randomQueuePrefix, runTsEntry, startRedisServer, type RedisServer } from '@spark/testing';
import { testConfigToml, waitFor } from './fixtures.js';

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

  it('exits 2 naming the file when the config is missing', async () => {
    const result = await runTsEntry(main, ['--config', '/nonexistent/spark.toml'], { timeoutMs: START_GUARD_MS });
    assert.equal(result.code, 2);
    assert.equal(result.stderr.trim(), '/nonexistent/spark.toml: cannot read config: file not found');
  });

  it('starts, publishes its heartbeat, and on SIGTERM removes it and exits 0', async () => {
    const prefix = randomQueuePrefix();
    const config = join(root, 'spark.toml');
    await writeFile(config, testConfigToml({ workspaceRoot: join(root, 'ws'), redisUrl: redis.url, prefix }));
    const child = spawn(process.execPath, ['--conditions=@spark/source', '--import', 'tsx', main, '--config', config], {
      env: { ...process.env, SPARK_BUILDER_ID: 'main-test' },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let stdout = '';
    child.stdout.on('data', (chunk: Buffer) => (stdout += chunk.toString()));
    const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
    const key = builderHeartbeatsKey(prefix);
    const raw = await waitFor('the heartbeat', () => connection.hget(key, 'main-test'), START_GUARD_MS);
    const heartbeat = builderHeartbeatSchema.parse(JSON.parse(raw));
    assert.deepEqual(heartbeat.kinds, ['package-build', 'os-image-build']);
    assert.equal(heartbeat.accepting, true);
    child.kill('SIGTERM');
    assert.equal(await exited, 0, stdout);
    assert.equal(await connection.hget(key, 'main-test'), null);
    assert.match(stdout, /"msg":"builder started"/);
    assert.match(stdout, /"msg":"stopped"/);
  });
});
