import assert from 'node:assert/strict';
import { mkdtemp, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { QUEUE_NAMES } from '@spark/protocol';
import { randomQueuePrefix, startRedisServer, type RedisServer } from '@spark/testing';
import { connectRedis, createLogger, redisLogin, redisReady, REDIS_USERS, type RedisRoleName } from '@spark/service';
import { startDashboard } from '../src/dashboard/dashboard.js';
import { runSpark } from './run-spark.js';

describe('spark redis-acl', () => {
  let tmp: string;
  let credentialsDir: string;
  let aclFile: string;
  let server: RedisServer | null = null;
  const prefix = randomQueuePrefix();
  const roles = Object.keys(REDIS_USERS) as RedisRoleName[];
  const passwords = () =>
    Promise.all(roles.map(async (role) => (await readFile(join(credentialsDir, `${REDIS_USERS[role]}.password`), 'utf8')).trim()));

  before(async () => {
    tmp = await mkdtemp(join(tmpdir(), 'spark-redis-acl-'));
    credentialsDir = join(tmp, 'redis-credentials');
    aclFile = join(tmp, 'redis', 'spark-users.acl');
  });

  after(async () => {
    await server?.stop();
    await rm(tmp, { recursive: true, force: true });
  });

  const acl = () => runSpark(['redis-acl', '--credentials-dir', credentialsDir, '--acl-file', aclFile, '--prefix', prefix]);

  it("writes one password file per user (0400, the operator's 0440 for spark-operators) and an ACL file with hashes only, printing no secret", async () => {
    const { code, stdout, stderr } = await acl();
    assert.equal(code, 0, stderr);
    assert.match(
      stdout,
      new RegExp(
        `^wrote ${aclFile} \\(users spark-connector, spark-builder, spark-signer, spark-uploader, spark-operator, spark-admin, spark-dashboard; default user off\\)\\n`,
      ),
    );
    const secrets = await passwords();
    for (const [i, role] of roles.entries()) {
      const info = await stat(join(credentialsDir, `${REDIS_USERS[role]}.password`));
      assert.equal(info.mode & 0o777, role === 'operator' ? 0o440 : 0o400, role);
      assert.ok((secrets[i] ?? '').length >= 40);
    }
    const text = await readFile(aclFile, 'utf8');
    for (const secret of secrets) {
      assert.ok(!text.includes(secret), 'the ACL file holds no password');
      assert.ok(!stdout.includes(secret) && !stderr.includes(secret), 'nothing printed a password');
    }
    assert.match(text, /^user default off /);
    assert.match(text, /\nuser spark-builder on resetpass #[0-9a-f]{64} resetkeys resetchannels /);
    assert.equal((await stat(aclFile)).mode & 0o777, 0o640);
  });

  it('keeps the passwords when run again', async () => {
    const before = await passwords();
    const { code, stdout } = await acl();
    assert.equal(code, 0);
    assert.match(stdout, new RegExp(`kept the password files in ${credentialsDir}`));
    assert.deepEqual(await passwords(), before);
  });

  it('gives a Redis that every user logs in to, and `spark status` as the operator', async () => {
    server = await startRedisServer({ args: ['--aclfile', aclFile] });
    for (const role of roles) {
      const redis = connectRedis(server.url, 'producer', { ...redisLogin(credentialsDir, role), retryStrategy: () => null });
      redis.on('error', () => undefined);
      await redisReady(redis);
      assert.equal(await redis.ping(), 'PONG', role);
      redis.disconnect();
    }
    const configFile = join(tmp, 'spark.toml');
    const config = (extra: string) =>
      writeFile(
        configFile,
        `LighthouseServer = 'tcp://lh.example.org:5570'\nAcceptedJobs = ['package-build']\nGpgKeyID = 'DEADBEEFDEADBEEF'\nRedisUrl = '${server?.url}'\nQueuePrefix = '${prefix}'\n${extra}`,
      );
    await config(`RedisCredentialsDir = '${credentialsDir}'\n`);
    const ok = await runSpark(['status', '--config', configFile, '--json']);
    // Read as the operator; unhealthy only because no connector or builder runs here (exit 5, not 69).
    assert.equal(ok.code, 5, ok.stderr);
    assert.deepEqual((JSON.parse(ok.stdout) as { unreadable: string[] }[])[0]?.unreadable, []);
    await config('');
    const refused = await runSpark(['status', '--config', configFile]);
    assert.notEqual(refused.code, 0);
    assert.match(refused.stderr, /NOAUTH/);
  });

  it('never prints the password of a Redis URL given on the command line', async () => {
    const operatorPassword = (await passwords())[roles.indexOf('operator')] ?? assert.fail('no operator password');
    const url = `redis://spark-operator:${operatorPassword}@127.0.0.1:${server?.port}`;
    const shown = await runSpark(['status', '--redis', `here=${url}`, '--prefix', prefix]);
    assert.equal(shown.code, 5, shown.stderr); // read; only no connector runs here
    assert.ok(shown.stdout.includes(`redis://spark-operator:***@127.0.0.1:${server?.port}`), shown.stdout);
    const wrong = await runSpark([
      'status',
      '--redis',
      `redis://spark-operator:wrong-${operatorPassword}@127.0.0.1:${server?.port}`,
      '--prefix',
      prefix,
    ]);
    assert.equal(wrong.code, 69);
    for (const text of [shown.stdout, shown.stderr, wrong.stdout, wrong.stderr]) assert.ok(!text.includes(operatorPassword), text);
    assert.match(wrong.stderr, /cannot read redis:\/\/spark-operator:\*\*\*@127\.0\.0\.1:\d+: .*WRONGPASS/);
  });

  it('serves the read-only dashboard as the operator, without showing the password', async () => {
    const operatorPassword = (await passwords())[roles.indexOf('operator')] ?? assert.fail('no operator password');
    const dashboard = await startDashboard({
      hosts: [{ label: 'here', url: `redis://spark-operator:${operatorPassword}@127.0.0.1:${server?.port}`, prefix }],
      port: 0,
      logger: createLogger('dashboard-test'),
    });
    try {
      const response = await fetch(new URL('api/queues', dashboard.url));
      const text = await response.text();
      assert.equal(response.status, 200, text);
      const api = JSON.parse(text) as { queues: { name: string; counts: Record<string, number> }[] };
      assert.deepEqual(api.queues.map((queue) => queue.name).sort(), [...QUEUE_NAMES].sort());
      assert.ok(api.queues.every((queue) => typeof queue.counts['waiting'] === 'number'));
      assert.ok(!text.includes(operatorPassword), 'the dashboard shows no password');
    } finally {
      await dashboard.close();
    }
  });
});
