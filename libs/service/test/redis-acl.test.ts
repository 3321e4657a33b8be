import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { execFile } from 'node:child_process';
import { after, before, describe, it } from 'node:test';
import { promisify } from 'node:util';
import { Queue, Worker, type Job } from 'bullmq';
import {
  archiveTargetsKey,
  builderControlChannel,
  builderHeartbeatsKey,
  jobRecordKey,
  lighthouseStatusKey,
  prefixPattern,
  QUEUE_NAMES,
  QueueName,
  queueKey,
  queueKeysPattern,
  REDIS_CHANNELS,
  REDIS_KEY_FAMILIES,
  REPORT_QUEUE_NAMES,
  REPORT_QUEUES,
  reportJobId,
  signerRoundKey,
  uploadProgressKey,
  type RedisChannelName,
  type RedisKeyFamilyName,
  type QueueName as QueueNameType,
} from '@spark/protocol';
import { randomQueuePrefix, startRedisServer, type RedisServer } from '@spark/testing';
import {
  connectRedis,
  redactRedisUrl,
  redactRedisUrls,
  lastStatusSeq,
  readBuilderHeartbeats,
  REDIS_GRANTS,
  sendReport,
  redisAclFile,
  redisLogin,
  redisPasswordFile,
  REDIS_USERS,
  RedisLoginError,
  type Redis,
  type RedisRoleName,
} from '@spark/service';

/*
 * A real redis-server loaded with the ACL file `spark redis-acl` writes. Each
 * role logs in with its own password file, does what its service does, and is
 * refused (NOPERM) what it must not do — the builder above all.
 */

const run = promisify(execFile);
const ROLES = Object.keys(REDIS_USERS) as RedisRoleName[];

describe('Redis ACL users', () => {
  let redis: RedisServer;
  let tmp: string;
  let credentialsDir: string;
  const prefix = randomQueuePrefix();
  const connections: Redis[] = [];
  const closers: (() => Promise<unknown>)[] = [];

  /** A `worker` connection logged in as `role`, closed after the tests. */
  function as(role: RedisRoleName): Redis {
    const connection = connectRedis(redis.url, 'worker', { ...redisLogin(credentialsDir, role), retryStrategy: () => null });
    connections.push(connection);
    return connection;
  }

  function queue(name: QueueNameType, connection: Redis): Queue {
    const opened = new Queue(name, { connection, prefix });
    closers.push(() => opened.close());
    return opened;
  }

  before(async () => {
    tmp = await mkdtemp(join(tmpdir(), 'spark-acl-'));
    credentialsDir = join(tmp, 'credentials');
    await import('node:fs/promises').then((fs) => fs.mkdir(credentialsDir));
    const passwords = Object.fromEntries(ROLES.map((role) => [role, randomBytes(24).toString('base64url')])) as Record<
      RedisRoleName,
      string
    >;
    for (const role of ROLES) await writeFile(redisPasswordFile(credentialsDir, role), `${passwords[role]}\n`, { mode: 0o400 });
    const aclFile = join(tmp, 'users.acl');
    await writeFile(aclFile, redisAclFile(prefix, passwords));
    redis = await startRedisServer({ args: ['--aclfile', aclFile] });
  });

  after(async () => {
    for (const close of closers.reverse()) await close().catch(() => undefined);
    for (const connection of connections) connection.disconnect();
    await redis.stop();
    await rm(tmp, { recursive: true, force: true });
  });

  /** `redis-cli` against the test server, as someone on the host would try it; its output and error text. */
  async function redisCli(...args: string[]): Promise<string> {
    const { stdout, stderr } = await run('redis-cli', ['-p', String(redis.port), ...args]).catch(
      (error: { stdout: string; stderr: string }) => error,
    );
    return `${stdout}${stderr}`.trim();
  }

  it('refuses a client that does not log in, and the default user', async () => {
    assert.match(await redisCli('SET', archiveTargetsKey(prefix), '{}'), /^NOAUTH Authentication required\./);
    assert.match(await redisCli('AUTH', 'default', ''), /WRONGPASS|disabled/);
  });

  it('refuses a wrong password', async () => {
    assert.match(
      await redisCli('--no-auth-warning', '--user', 'spark-connector', '--pass', 'guess', 'GET', archiveTargetsKey(prefix)),
      /WRONGPASS invalid username-password pair/,
    );
  });

  describe('the builder', () => {
    let builder: Redis;
    before(() => {
      builder = as('builder');
    });

    it('cannot write the upload targets', async () => {
      await assert.rejects(builder.set(archiveTargetsKey(prefix), '{"archive_repos":{}}'), /^ReplyError: NOPERM/);
      await assert.rejects(builder.get(archiveTargetsKey(prefix)), /^ReplyError: NOPERM/);
    });

    it('cannot write or read the job records', async () => {
      const key = jobRecordKey(prefix, '00000000-0000-4000-8000-000000000000');
      await assert.rejects(builder.set(key, '{}'), /^ReplyError: NOPERM/);
      await assert.rejects(builder.del(key), /^ReplyError: NOPERM/);
      await assert.rejects(builder.get(key), /^ReplyError: NOPERM/);
    });

    it('cannot add to, or change, the upload queue', async () => {
      const uploads = queue(QueueName.upload, builder);
      await assert.rejects(uploads.add(QueueName.upload, { forged: true }, { jobId: 'forged.upload' }), /NOPERM/);
      await assert.rejects(builder.hset(queueKey(prefix, QueueName.upload, 'forged'), 'data', '{}'), /^ReplyError: NOPERM/);
    });

    it("cannot add, change or remove reports in another service's report queue, nor mark a round the signer's", async () => {
      for (const sender of ['connector', 'signer', 'uploader'] as const) {
        const reports = queue(REPORT_QUEUES[sender], builder);
        await assert.rejects(reports.add('success', { forged: true }, { jobId: 'forged.final' }), /NOPERM/, sender);
        await assert.rejects(builder.hset(queueKey(prefix, REPORT_QUEUES[sender], 'forged.final'), 'data', '{}'), /^ReplyError: NOPERM/);
        await assert.rejects(builder.lpush(queueKey(prefix, REPORT_QUEUES[sender], 'wait'), 'x'), /^ReplyError: NOPERM/);
        await assert.rejects(builder.del(queueKey(prefix, REPORT_QUEUES[sender], 'wait')), /^ReplyError: NOPERM/);
      }
      await assert.rejects(builder.set(signerRoundKey(prefix, '00000000-0000-4000-8000-000000000000'), '1'), /^ReplyError: NOPERM/);
      await assert.rejects(builder.del(signerRoundKey(prefix, '00000000-0000-4000-8000-000000000000')), /^ReplyError: NOPERM/);
    });

    it('cannot reach other keys through a script', async () => {
      const script = "return redis.call('SET', KEYS[1], ARGV[1])";
      await assert.rejects(builder.eval(script, 1, archiveTargetsKey(prefix), '{}'), /^ReplyError: NOPERM/);
      // A script given an allowed key still cannot touch another one.
      const sneaky = "return redis.call('SET', ARGV[2], ARGV[1])";
      const buildKey = queueKey(prefix, QueueName.build, 'x');
      await assert.rejects(builder.eval(sneaky, 1, buildKey, '{}', archiveTargetsKey(prefix)), /can't access at least one of the keys/);
    });

    it('cannot write upload progress, the Lighthouse status, flush or reconfigure Redis', async () => {
      await assert.rejects(
        builder.hset(uploadProgressKey(prefix, { uuid: '00000000-0000-4000-8000-000000000000', round: '1' }), 'a', 'done'),
        /^ReplyError: NOPERM/,
      );
      await assert.rejects(builder.set(lighthouseStatusKey(prefix), '{}'), /^ReplyError: NOPERM/);
      await assert.rejects(builder.flushall(), /^ReplyError: NOPERM/);
      await assert.rejects(builder.config('SET', 'appendonly', 'no'), /^ReplyError: NOPERM/);
      await assert.rejects(builder.call('ACL', 'SETUSER', 'spark-builder', '+@all', '~*'), /^ReplyError: NOPERM/);
      await assert.rejects(builder.keys('*'), /^ReplyError: NOPERM/);
      await assert.rejects(builder.publish(prefixPattern(prefix).replace('*', 'other'), 'x'), /^ReplyError: NOPERM/);
    });

    it("cannot list key names with SCAN (the job records' uuids), nor can the signer", async () => {
      await assert.rejects(
        builder.scan('0', 'MATCH', REDIS_KEY_FAMILIES.jobRecords.pattern(prefix)),
        /^ReplyError: NOPERM .*'scan' command/,
      );
      await assert.rejects(as('signer').scan('0'), /^ReplyError: NOPERM .*'scan' command/);
    });
  });

  describe('no service user can list or count keys, or see other clients', () => {
    const STAGES = ['connector', 'builder', 'signer', 'uploader'] as const;
    for (const role of STAGES) {
      it(`${role}: SCAN, RANDOMKEY, DBSIZE, OBJECT, MEMORY, PUBSUB, CLIENT LIST/TRACKING, KEYS, MONITOR, DEBUG are refused`, async () => {
        const connection = as(role);
        const own = sample(role);
        for (const command of [
          ['scan', '0'],
          ['randomkey'],
          ['dbsize'],
          ['object', 'encoding', own],
          ['object', 'freq', own],
          ['memory', 'stats'],
          ['memory', 'usage', own],
          ['pubsub', 'channels'],
          ['pubsub', 'numsub', builderControlChannel(prefix)],
          ['client', 'list'],
          ['client', 'tracking', 'on', 'bcast', 'prefix', prefixPattern(prefix).replace('*', '')],
          ['client', 'kill', 'user', 'spark-signer'],
          ['client', 'pause', '10'],
          ['client', 'no-evict', 'on'],
          ['keys', '*'],
          ['monitor'],
          ['swapdb', '0', '1'],
        ]) {
          await assert.rejects(
            connection.call(command[0] ?? '', ...command.slice(1)),
            /^ReplyError: NOPERM this user has no permissions to run the '[a-z|-]+' command/,
            `${role}: ${command.join(' ')}`,
          );
        }
      });

      it(`${role}: what ioredis and BullMQ send on connecting still works (INFO, CLIENT SETNAME, CLIENT INFO)`, async () => {
        const connection = as(role);
        assert.match(String(await connection.info()), /redis_version:/);
        assert.equal(await connection.call('client', 'setname', `spark-${role}-test`), 'OK');
        assert.match(String(await connection.call('client', 'info')), new RegExp(`name=spark-${role}-test`));
      });
    }

    /** A key the role may write, for the commands that name one. */
    function sample(role: RedisRoleName): string {
      const queues = REDIS_GRANTS[role].queues;
      return queueKey(prefix, queues[0] ?? QueueName.build, 'probe');
    }

    it('the uploader finds its last status excerpt without SCAN', async () => {
      const uploader = as('uploader');
      const reports = queue(REPORT_QUEUES.uploader, uploader);
      const round = { uuid: '22222222-2222-4222-8222-222222222222', round: '7' };
      for (const seq of [1, 4]) await sendReport(reports, { kind: 'status', ...round, at: seq, logExcerpt: 'x' }, seq);
      assert.equal(await lastStatusSeq(reports, round), 4);
      for (const seq of [1, 4]) await reports.remove(reportJobId(round, { kind: 'status', seq }));
    });
  });

  describe('every user reaches exactly what REDIS_GRANTS names, in the names of libs/protocol redis-keys.ts', () => {
    /** A concrete key of a pattern: the part that varies filled in. */
    const sample = (pattern: string) => pattern.replace('*', 'acl-probe');
    /** True when Redis answered, false when it refused with NOPERM. */
    const allowed = (attempt: Promise<unknown>) =>
      attempt.then(
        () => true,
        (error: Error) => {
          if (/NOPERM/.test(error.message)) return false;
          // A key of another type (WRONGTYPE) was reached all the same.
          if (/WRONGTYPE/.test(error.message)) return true;
          throw error;
        },
      );
    const families = Object.keys(REDIS_KEY_FAMILIES) as RedisKeyFamilyName[];
    const channels = Object.keys(REDIS_CHANNELS) as RedisChannelName[];

    for (const role of ROLES) {
      const grant = REDIS_GRANTS[role];
      const all = grant.scope !== 'listed';
      const writes = grant.scope !== 'read';

      it(`${role}: the queues`, async () => {
        const connection = as(role);
        for (const name of QUEUE_NAMES) {
          const key = sample(queueKeysPattern(prefix, name));
          const expected = all || grant.queues.includes(name);
          assert.equal(await allowed(connection.get(key)), expected, `${role} reads ${key}`);
          assert.equal(await allowed(connection.set(key, 'x')), expected && writes, `${role} writes ${key}`);
          if (expected && writes) await connection.del(key);
        }
      });

      it(`${role}: the plain keys`, async () => {
        const connection = as(role);
        for (const name of families) {
          const key = sample(REDIS_KEY_FAMILIES[name].pattern(prefix));
          const reads = all || grant.keys.includes(name) || grant.readKeys.includes(name);
          const mayWrite = writes && (all || grant.keys.includes(name));
          assert.equal(await allowed(connection.exists(key)), reads, `${role} reads ${name} (${key})`);
          assert.equal(await allowed(connection.set(key, 'x')), mayWrite, `${role} writes ${name} (${key})`);
          if (mayWrite) await connection.del(key);
        }
        // A key under the prefix that no family names is only for the users granted everything.
        assert.equal(
          await allowed(connection.exists(sample(prefixPattern(prefix)).replace('acl-probe', 'unnamed'))),
          all,
          `${role} reads a key no family names`,
        );
      });

      it(`${role}: the channels`, async () => {
        const connection = as(role);
        // A connection that subscribes can run nothing else: one of its own.
        const listener = as(role);
        for (const name of channels) {
          const expected = grant.scope === 'read-write' || grant.channels.includes(name);
          assert.equal(await allowed(connection.publish(REDIS_CHANNELS[name](prefix), 'probe')), expected, `${role} publishes on ${name}`);
          assert.equal(await allowed(listener.subscribe(REDIS_CHANNELS[name](prefix))), expected, `${role} listens on ${name}`);
        }
      });
    }

    it('grants each family of keys and each channel to some service other than the connector', () => {
      const services = (['builder', 'signer', 'uploader'] as const).map((role) => REDIS_GRANTS[role]);
      const unused = families.filter((name) => !services.some((grant) => grant.keys.includes(name) || grant.readKeys.includes(name)));
      // These only the connector (and the operator, the admin) reach: its own records and its lock.
      assert.deepEqual(unused.sort(), ['blockedKinds', 'connectorLock', 'lighthouseStatus']);
      assert.deepEqual(
        channels.filter((name) => !services.some((grant) => grant.channels.includes(name))),
        [],
      );
    });
  });

  it('lets each service do its part of a job, end to end, with its own credentials', async () => {
    const connector = as('connector');
    const builder = as('builder');
    const signer = as('signer');
    const uploader = as('uploader');
    const uuid = '11111111-2222-4333-8444-555555555555';

    // connector: upload targets, the job record, the Lighthouse status, a build job.
    await connector.set(archiveTargetsKey(prefix), JSON.stringify({ archive_repos: {}, receivedAt: 1 }));
    await connector.set(jobRecordKey(prefix, uuid), '{"round":"1"}', 'EX', 60);
    await connector.set(lighthouseStatusKey(prefix), '{}');
    await queue(QueueName.build, connector).add(QueueName.build, { uuid }, { jobId: `${uuid}.1` });

    // builder: heartbeat, control channel, takes the build job, hands to sign and reports.
    const beat = {
      id: 'b1',
      slots: 1,
      busy: 0,
      kinds: ['package-build' as const],
      architectures: ['amd64'],
      accepting: true,
      at: Date.now(),
    };
    await builder.hset(builderHeartbeatsKey(prefix), 'b1', JSON.stringify(beat));
    const control = as('builder');
    await control.subscribe(builderControlChannel(prefix));
    const signQueue = queue(QueueName.sign, builder);
    const reportFromBuilder = queue(REPORT_QUEUES.builder, builder);
    const built = await runOne(QueueName.build, as('builder'), async (job) => {
      await reportFromBuilder.add('accepted', { uuid }, { jobId: `${uuid}.1.accepted` });
      await signQueue.add(QueueName.sign, job.data, { jobId: `${uuid}.1.sign` });
    });
    assert.equal(built, `${uuid}.1`);

    // signer: reads the record and the targets, takes the sign job, hands to upload; cannot write the record.
    assert.equal(await signer.get(jobRecordKey(prefix, uuid)), '{"round":"1"}');
    assert.notEqual(await signer.get(archiveTargetsKey(prefix)), null);
    await assert.rejects(signer.set(jobRecordKey(prefix, uuid), '{}'), /^ReplyError: NOPERM/);
    await assert.rejects(signer.set(archiveTargetsKey(prefix), '{}'), /^ReplyError: NOPERM/);
    const uploadQueue = queue(QueueName.upload, signer);
    await runOne(QueueName.sign, as('signer'), async (job) => {
      await signer.set(signerRoundKey(prefix, uuid), '1', 'EX', 60);
      await uploadQueue.add(QueueName.upload, job.data, { jobId: `${uuid}.1.upload` });
    });
    await assert.rejects(queue(REPORT_QUEUES.uploader, signer).add('success', {}), /NOPERM/);

    // uploader: reads the targets, keeps progress, takes the upload job, reports the end.
    assert.notEqual(await uploader.get(archiveTargetsKey(prefix)), null);
    await assert.rejects(uploader.set(archiveTargetsKey(prefix), '{}'), /^ReplyError: NOPERM/);
    const reportFromUploader = queue(REPORT_QUEUES.uploader, uploader);
    await assert.rejects(queue(REPORT_QUEUES.builder, uploader).add('accepted', {}), /NOPERM/);
    await runOne(QueueName.upload, as('uploader'), async () => {
      await uploader.hset(uploadProgressKey(prefix, { uuid, round: '1' }), 'x.deb', 'done');
      await reportFromUploader.add('success', { uuid }, { jobId: `${uuid}.1.final` });
    });

    // connector: relays both reports, reads the signer's mark, counts every queue, finds the builder's heartbeat.
    const relayed: string[] = [];
    for (const name of [REPORT_QUEUES.builder, REPORT_QUEUES.uploader]) {
      await runOne(name, as('connector'), (job) => Promise.resolve(void relayed.push(job.id ?? '')));
    }
    assert.deepEqual(relayed, [`${uuid}.1.accepted`, `${uuid}.1.final`]);
    assert.equal(await connector.get(signerRoundKey(prefix, uuid)), '1');
    for (const name of [QueueName.build, QueueName.sign, QueueName.upload, ...REPORT_QUEUE_NAMES]) {
      assert.equal((await queue(name, connector).getJobCounts('wait')).wait, 0);
    }
    assert.deepEqual(await readBuilderHeartbeats(connector, prefix, { prune: true }), [beat]);
  });

  it('lets the operator read everything and write nothing', async () => {
    const operator = as('operator');
    for (const name of [QueueName.build, QueueName.sign, QueueName.upload, ...REPORT_QUEUE_NAMES]) {
      const counts = await queue(name, operator).getJobCounts('wait', 'active', 'completed', 'failed', 'delayed');
      assert.equal(typeof counts['completed'], 'number');
    }
    assert.notEqual(await operator.get(archiveTargetsKey(prefix)), null);
    await assert.rejects(operator.set(archiveTargetsKey(prefix), '{}'), /^ReplyError: NOPERM/);
    await assert.rejects(
      operator.eval("return redis.call('DEL', KEYS[1])", 1, archiveTargetsKey(prefix)),
      /can't run this command or subcommand/,
    );
    await assert.rejects(queue(QueueName.build, operator).add('x', {}), /can't run this command or subcommand|NOPERM/);
  });

  it('names the password file, never the password, when it cannot log in', () => {
    assert.deepEqual(redisLogin(null, 'builder'), {});
    assert.throws(
      () => redisLogin(join(tmp, 'missing'), 'builder'),
      (error: Error) =>
        error instanceof RedisLoginError &&
        error.message === `cannot read the Redis password of spark-builder from ${join(tmp, 'missing', 'spark-builder.password')}: ENOENT`,
    );
  });

  it('redacts passwords in Redis URLs and in text that carries them', () => {
    assert.equal(redactRedisUrl('redis://spark:s3cret@127.0.0.1:6379/0'), 'redis://spark:***@127.0.0.1:6379/0');
    assert.equal(redactRedisUrl('redis://:s3cret@localhost'), 'redis://:***@localhost');
    assert.equal(redactRedisUrl('rediss://s3cret@host:6380'), 'rediss://***@host:6380');
    assert.equal(redactRedisUrl('redis://127.0.0.1:6379'), 'redis://127.0.0.1:6379');
    assert.equal(redactRedisUrl('/run/redis/redis.sock'), '/run/redis/redis.sock');
    assert.equal(
      redactRedisUrls('cannot read redis://u:s3cret@h:1/2: ECONNREFUSED; also rediss://:x@y'),
      'cannot read redis://u:***@h:1/2: ECONNREFUSED; also rediss://:***@y',
    );
  });

  /** Runs a worker on `name` with `connection` until it has processed `count` jobs; returns the last one's id. */
  async function runOne(name: QueueNameType, connection: Redis, process: (job: Job) => Promise<void>, count = 1): Promise<string> {
    return new Promise<string>((resolve, reject) => {
      let done = false;
      let left = count;
      const worker: Worker = new Worker(
        name,
        async (job) => {
          await process(job);
          return job.id;
        },
        { connection, prefix, autorun: true },
      );
      worker.on('error', (error) => {
        if (!done) reject(error);
      });
      worker.on('failed', (_job, error) => {
        done = true;
        void worker.close().then(() => reject(error));
      });
      worker.on('completed', (job) => {
        if (done || --left > 0) return;
        done = true;
        void worker.close().then(() => resolve(job.id ?? ''));
      });
    });
  }
});
