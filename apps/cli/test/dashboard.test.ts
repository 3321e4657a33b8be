import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { promisify } from 'node:util';
import { Queue } from 'bullmq';
import { archiveTargetsKey, jobRecordKey, QUEUE_NAMES, QueueName, stageJobId } from '@spark/protocol';
import {
  connectRedis,
  createLogger,
  redisAclFile,
  redisLogin,
  redisPasswordFile,
  redisReady,
  REDIS_USERS,
  type Redis,
  type RedisRoleName,
} from '@spark/service';
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

describe('queue dashboard on a Redis with the ACL users', () => {
  let server: RedisServer;
  let dir: string;
  let connector: Redis;
  const prefix = randomQueuePrefix();
  const token = randomBytes(24).toString('base64url');
  const roles = Object.keys(REDIS_USERS) as RedisRoleName[];
  const login = (role: RedisRoleName) => redisLogin(dir, role);
  const waiting = async () => {
    const build = new Queue(QueueName.build, { connection: connector, prefix });
    try {
      return await build.getWaitingCount();
    } finally {
      await build.close();
    }
  };

  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'spark-dashboard-acl-'));
    const passwords = Object.fromEntries(roles.map((role) => [role, randomBytes(24).toString('base64url')])) as Record<
      RedisRoleName,
      string
    >;
    for (const role of roles) await writeFile(redisPasswordFile(dir, role), `${passwords[role]}\n`, { mode: 0o400 });
    await writeFile(join(dir, 'users.acl'), redisAclFile(prefix, passwords));
    server = await startRedisServer({ args: ['--aclfile', join(dir, 'users.acl')] });
    connector = connectRedis(server.url, 'producer', login('connector'));
    await redisReady(connector);
  });
  after(async () => {
    connector.disconnect();
    await server.stop();
    await rm(dir, { recursive: true, force: true });
  });

  it('read-write: the API without the token answers 401 and changes nothing; with it, adds a job as spark-dashboard', async () => {
    const dashboard = await startDashboard({
      hosts: [{ label: 'h', url: server.url, prefix, login: login('dashboard') }],
      port: 0,
      readWrite: true,
      token,
      logger,
    });
    try {
      const add = (headers: Record<string, string>) =>
        fetch(new URL(`api/queues/${QueueName.build}/add`, dashboard.url), {
          method: 'POST',
          headers: { 'content-type': 'application/json', ...headers },
          body: JSON.stringify({ name: 'forged', data: { forged: true } }),
        });
      const before = await waiting();
      const wrong: Record<string, string>[] = [
        {},
        { authorization: 'Bearer wrong-token-of-some-length' },
        { cookie: 'spark_dashboard_token=guess' },
      ];
      for (const headers of wrong) {
        const denied = await add(headers);
        assert.equal(denied.status, 401);
        assert.match(await denied.text(), /a valid token is required/);
      }
      assert.equal(await waiting(), before, 'nothing added without the token');
      const allowed = await add({ authorization: `Bearer ${token}` });
      assert.equal(allowed.status, 200, await allowed.text());
      assert.equal(await waiting(), before + 1);
      assert.equal(dashboard.loginUrl, `${dashboard.url}?token=${encodeURIComponent(token)}`);
      const client = (await connector.call('CLIENT', 'LIST').catch((error: Error) => error.message)) as string;
      assert.match(client, /NOPERM/, 'the connector may not list clients');
    } finally {
      await dashboard.close();
    }
  });

  it('the dashboard user reaches the queues only, and the read-only dashboard’s user (spark-operator) cannot write', async () => {
    const dashboardUser = connectRedis(server.url, 'producer', login('dashboard'));
    const operator = connectRedis(server.url, 'producer', login('operator'));
    await Promise.all([redisReady(dashboardUser), redisReady(operator)]);
    try {
      await assert.rejects(dashboardUser.set(jobRecordKey(prefix, uuid), '{}'), /^ReplyError: NOPERM/);
      await assert.rejects(dashboardUser.get(archiveTargetsKey(prefix)), /^ReplyError: NOPERM/);
      await assert.rejects(dashboardUser.scan('0'), /^ReplyError: NOPERM/);
      const asOperator = new Queue(QueueName.build, { connection: operator, prefix, skipMetasUpdate: true });
      try {
        await assert.rejects(asOperator.add('forged', {}), /can't run this command or subcommand|NOPERM/);
      } finally {
        await asOperator.close();
      }
      await assert.rejects(operator.set(jobRecordKey(prefix, uuid), '{}'), /^ReplyError: NOPERM/);
    } finally {
      dashboardUser.disconnect();
      operator.disconnect();
    }
    // Read-only, as spark-operator: shows the queues, and its API adds nothing.
    const dashboard = await startDashboard({ hosts: [{ label: 'h', url: server.url, prefix, login: login('operator') }], port: 0, logger });
    try {
      const api = (await (await fetch(new URL('api/queues', dashboard.url))).json()) as {
        queues: { name: string; readOnlyMode: boolean }[];
      };
      assert.equal(api.queues.length, QUEUE_NAMES.length);
      assert.ok(api.queues.every((q) => q.readOnlyMode));
      const before = await waiting();
      const tried = await fetch(new URL(`api/queues/${QueueName.build}/add`, dashboard.url), {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ name: 'forged', data: {} }),
      });
      assert.notEqual(tried.status, 200);
      assert.equal(await waiting(), before, 'the read-only dashboard added nothing');
    } finally {
      await dashboard.close();
    }
  });
});
