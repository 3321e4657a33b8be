import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { promisify } from 'node:util';
import { Queue } from 'bullmq';
import { QUEUE_NAMES, stageJobId } from '@spark/protocol';
import { connectRedis, createLogger, redisReady, type Redis } from '@spark/service';
import { randomQueuePrefix, startRedisServer, type RedisServer } from '@spark/testing';
import { startDashboard } from '../src/dashboard/dashboard.js';

const run = promisify(execFile);
const logger = createLogger('dashboard-test');
const uuid = '3b4e0e3c-7d2a-4f44-9a46-0d52c2f1a6b1';

/** Loads a page in Debian's headless Chromium, lets its scripts run, and returns the DOM. */
async function renderInChromium(url: string): Promise<string> {
  const profile = await mkdtemp(join(tmpdir(), 'spark-chromium-'));
  try {
    const { stdout } = await run(
      'chromium',
      [
        '--headless',
        '--no-sandbox',
        '--disable-gpu',
        '--disable-quic',
        '--no-first-run',
        '--disable-background-networking',
        '--disable-component-update',
        '--disable-sync',
        `--user-data-dir=${profile}`,
        '--virtual-time-budget=10000',
        '--dump-dom',
        url,
      ],
      { timeout: 60_000, maxBuffer: 16 * 1024 * 1024 },
    );
    return stdout;
  } finally {
    await rm(profile, { recursive: true, force: true });
  }
}

describe('queue dashboard', () => {
  let server: RedisServer;
  let redis: Redis;
  const hostA = randomQueuePrefix();
  const hostB = randomQueuePrefix();
  before(async () => {
    server = await startRedisServer();
    redis = connectRedis(server.url, 'producer');
    await redisReady(redis);
    const build = new Queue('build', { connection: redis, prefix: hostA });
    await build.add('package-build', { job: 'x' }, { jobId: stageJobId({ uuid, round: '1' }, 'build') });
    await build.close();
  });
  after(async () => {
    redis.disconnect();
    await server.stop();
  });

  it('shows the four queues of each host in headless Chromium, read-only', async () => {
    const dashboard = await startDashboard({
      hosts: [
        { label: 'hydrogen', url: server.url, prefix: hostA },
        { label: 'helium', url: server.url, prefix: hostB },
      ],
      port: 0,
      logger,
    });
    try {
      assert.match(dashboard.url, /^http:\/\/127\.0\.0\.1:\d+\/$/);
      const dom = await renderInChromium(dashboard.url);
      for (const text of ['hydrogen', 'helium', 'build', 'sign', 'upload', 'report']) {
        assert.ok(dom.includes(text), `dashboard page does not show ${text}`);
      }
      const api = (await (await fetch(new URL('api/queues', dashboard.url))).json()) as {
        queues: { name: string; readOnlyMode: boolean; counts: Record<string, number> }[];
      };
      const names = api.queues.map((q) => q.name).sort();
      assert.deepEqual(
        names,
        ['helium', 'hydrogen'].flatMap((host) => [...QUEUE_NAMES].sort().map((queue) => `${host}:${queue}`)),
      );
      assert.ok(names.includes('hydrogen:report-builder'), 'each report queue is shown');
      assert.ok(api.queues.every((q) => q.readOnlyMode));
      assert.equal(api.queues.find((q) => q.name === 'hydrogen:build')?.counts['waiting'], 1);
    } finally {
      await dashboard.close();
    }
  });

  it('refuses to listen beyond loopback without a token', async () => {
    await assert.rejects(
      startDashboard({ hosts: [{ label: 'h', url: server.url, prefix: hostA }], bind: '0.0.0.0', port: 0, logger }),
      /refusing to serve the dashboard on 0\.0\.0\.0 without a token/,
    );
  });

  it('answers 401 without the token and serves with it', async () => {
    const dashboard = await startDashboard({
      hosts: [{ label: 'h', url: server.url, prefix: hostA }],
      bind: '0.0.0.0',
      port: 0,
      token: 's3cret',
      logger,
    });
    try {
      const port = new URL(dashboard.url).port;
      const denied = await fetch(`http://127.0.0.1:${port}/api/queues`);
      assert.equal(denied.status, 401);
      assert.match(await denied.text(), /a valid token is required/);
      assert.equal((await fetch(`http://127.0.0.1:${port}/api/queues`, { headers: { authorization: 'Bearer wrong' } })).status, 401);
      const allowed = await fetch(`http://127.0.0.1:${port}/api/queues?token=s3cret`);
      assert.equal(allowed.status, 200);
      assert.match(allowed.headers.get('set-cookie') ?? '', /^spark_dashboard_token=s3cret; HttpOnly/);
    } finally {
      await dashboard.close();
    }
  });
});
