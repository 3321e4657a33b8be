/*
 * `spark verify` on a worker set up with the project's own tools: keys from
 * `spark keytool`, Redis users from `spark redis-acl` in a real redis-server,
 * the Lighthouse stand-in over CURVE, the upload receiver, the host's real
 * debspawn and sudo. The test runs as root and cannot create the spark-*
 * system users, so the accounts every file must belong to are root's here
 * (VerifyHost.accounts); owners and modes are checked all the same.
 */
import assert from 'node:assert/strict';
import { chmod, mkdir, mkdtemp, readFile, rename, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { parseCurveKeyFile } from '@spark/keys';
import { openpgp } from '@spark/keys/openpgp';
import {
  randomQueuePrefix,
  startLighthouseStandIn,
  startRedisServer,
  startUploadReceiver,
  type LighthouseStandIn,
  type RedisServer,
  type UploadReceiver,
} from '@spark/testing';
import { writeRedisAcl } from '../src/redis-acl.js';
import { verifyCommand } from '../src/verify/verify-command.js';
import type { VerifyHost } from '../src/verify/verify-worker.js';
import { ROOT_ACCOUNTS } from './root-accounts.js';
import { runSpark } from './run-spark.js';

const MACHINE = 'hydrogen';

interface JsonReport {
  ok: boolean;
  exitCode: number;
  checks: { check: string; status: string; message: string; kind?: string }[];
}

describe('spark verify', { timeout: 120_000 }, () => {
  let dir: string;
  let configFile: string;
  let curveDir: string;
  let credentialsDir: string;
  let helper: string;
  let redis: RedisServer;
  let standIn: LighthouseStandIn;
  let receiver: UploadReceiver;
  let writeConfig: (suites?: string) => Promise<void>;
  const prefix = randomQueuePrefix();

  const verifyWith = (host: VerifyHost, ...args: string[]) =>
    runSpark((io) =>
      verifyCommand(['--config', configFile, ...args], io, { accounts: ROOT_ACCOUNTS, buildHelper: helper, isRoot: true, ...host }),
    );
  const verify = (...args: string[]) => verifyWith({}, ...args);
  const keytool = async (...args: string[]) => {
    const result = await runSpark(['keytool', ...args]);
    assert.equal(result.code, 0, result.stderr);
  };
  /** The line of check `check`, which must be there exactly once. */
  const line = (out: string, check: string) => {
    const lines = out.split('\n').filter((text) => text.slice(5).startsWith(`${check}: `));
    assert.equal(lines.length, 1, `one line for ${check} in:\n${out}`);
    return lines[0] as string;
  };

  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'spark-verify-'));
    configFile = join(dir, 'spark.toml');
    curveDir = join(dir, 'keys', 'curve');
    credentialsDir = join(dir, 'redis');
    const workspaceRoot = join(dir, 'lkspark');

    // The Curve keys, as an operator makes them: key-new for the worker and for Lighthouse.
    await keytool('key-new', `--id=${MACHINE}`, '--name=Hydrogen Worker', '--email=h@example.org', join(dir, 'new'));
    await keytool('key-new', '--id=lighthouse', '--name=Lighthouse', '--email=lh@example.org', join(dir, 'new'));
    const serverSecret = parseCurveKeyFile(await readFile(join(dir, 'new', 'lighthouse.key_secret'), 'utf8'));
    await mkdir(join(dir, 'trusted'));
    await keytool('install-trusted-key', '--dir', join(dir, 'trusted'), MACHINE, join(dir, 'new', `${MACHINE}.key`));

    receiver = await startUploadReceiver({ dir: join(dir, 'archive'), repos: ['master'], pathPrefix: '/_upload' });
    standIn = await startLighthouseStandIn({
      serverKeys: { publicKey: serverSecret.curvePublicKey ?? '', secretKey: serverSecret.curveSecretKey ?? '' },
      trustedKeysDir: join(dir, 'trusted'),
      archiveRepos: { master: { upload_fqdn: `127.0.0.1:${receiver.port}/_upload`, upload_method: 'http' } },
    });

    // The OpenPGP key, exported armored as the README says, 0600.
    const { privateKey } = await openpgp.generateKey({
      type: 'ecc',
      curve: 'ed25519Legacy',
      userIDs: [{ name: 'Hydrogen', email: 'h@example.org' }],
      format: 'armored',
    });
    const fingerprint = (await openpgp.readPrivateKey({ armoredKey: privateKey })).getFingerprint().toUpperCase();
    await mkdir(join(dir, 'keys'));
    await writeFile(join(dir, 'keys', 'hydrogen_secret.gpg'), privateKey, { mode: 0o600 });

    writeConfig = async (suites = "Suites = ['bookworm']") => {
      await writeFile(
        configFile,
        `LighthouseServer = '${standIn.endpoint}'
AcceptedJobs = ['package-build']
MachineName = '${MACHINE}'
GpgKeyID = '${fingerprint}'
GpgSecretKeyFile = '${join(dir, 'keys', 'hydrogen_secret.gpg')}'
Architectures = ['amd64']
CurveKeysDir = '${curveDir}'
WorkspaceRoot = '${workspaceRoot}'
RedisUrl = '${redis.url}'
QueuePrefix = '${prefix}'
RedisCredentialsDir = '${credentialsDir}'
[connector]
ReplyTimeout = 2
[builder]
${suites}
`,
        { mode: 0o644 },
      );
      await chmod(configFile, 0o644);
    };

    // Redis as setup-host sets it up: spark redis-acl, then redis-server with the ACL file.
    const aclFile = join(dir, 'spark-users.acl');
    await writeRedisAcl({ credentialsDir, aclFile, prefix, chown: false });
    redis = await startRedisServer({ args: ['--aclfile', aclFile] });
    await writeConfig();
    await keytool('install-worker-key', '--config', configFile, join(dir, 'new', `${MACHINE}.key_secret`));
    await keytool('install-server-key', '--config', configFile, join(dir, 'new', 'lighthouse.key'));

    // The workspace root as setup-host makes it.
    for (const sub of ['workspaces', 'logs']) {
      await mkdir(join(workspaceRoot, sub), { recursive: true });
      await chmod(join(workspaceRoot, sub), 0o2770);
    }
    await mkdir(join(workspaceRoot, 'audit'), { mode: 0o700 });
    helper = join(dir, 'spark-build-helper');
    await writeFile(helper, '#!/bin/sh\nexit 64\n', { mode: 0o755 });
  });

  after(async () => {
    standIn?.close();
    await receiver?.close();
    await redis?.stop();
    await rm(dir, { recursive: true, force: true });
  });

  it('passes on a good setup: every line OK, exit 0, and Lighthouse was asked for archive-info as the connector asks', async () => {
    const asked = standIn.requests.length;
    const result = await verify();
    assert.equal(result.code, 0, result.stdout + result.stderr);
    for (const text of result.stdout.trim().split('\n').slice(0, -1)) {
      assert.match(text, /^(OK {3}|SKIP systemd units: skipped: systemd is not running here)/, text);
    }
    assert.match(result.stdout, /\nspark verify: all \d+ checks passed\n$/);
    assert.match(
      line(result.stdout, 'Curve secret key'),
      new RegExp(`^OK   Curve secret key: ${curveDir}/secret/${MACHINE}-spark_private\\.sec: root:root 0600$`),
    );
    assert.match(
      line(result.stdout, 'Lighthouse'),
      /^OK {3}Lighthouse: tcp:\/\/127\.0\.0\.1:\d+ accepted the CURVE handshake and answered archive-info in \d+ ms \(repositories: master\)$/,
    );
    assert.match(
      line(result.stdout, 'archive upload master'),
      new RegExp(`^OK   archive upload master: http://127\\.0\\.0\\.1:${receiver.port}/_upload/master/ answers \\(HTTP 405\\)$`),
    );
    assert.match(
      line(result.stdout, 'Redis user spark-builder'),
      /^OK {3}Redis user spark-builder: logs in; may DEL \(change the build queue\); refused GET \(read job records\) \(NOPERM\)$/,
    );
    assert.match(line(result.stdout, 'Redis default user'), /refuses a client that does not log in \(NOAUTH\)/);
    assert.match(line(result.stdout, 'debspawn image bookworm/amd64'), /^OK {3}debspawn image bookworm\/amd64: bookworm-\w+-amd64$/);
    assert.match(line(result.stdout, 'sudo for root'), new RegExp(`^OK   sudo for root: may run ${helper} as root without a password$`));
    assert.match(
      line(result.stdout, 'OpenPGP key'),
      new RegExp(
        `^OK   OpenPGP key: [0-9A-F]{40} is GpgKeyID [0-9A-F]{40} and can sign; installed as the file ${dir}/keys/hydrogen_secret\\.gpg, in clear on disk \\(spark keytool install-signer-key makes it an encrypted systemd credential\\)$`,
      ),
    );
    assert.match(
      line(result.stdout, 'Redis server'),
      /^OK {3}Redis server: redis:\/\/127\.0\.0\.1:\d+: no config file, maxmemory none, maxmemory-policy noeviction$/,
    );
    assert.equal(
      line(result.stdout, 'sudo for laniakea-spark'),
      "OK   sudo for laniakea-spark: no user lkspark or _lkspark (laniakea-spark's) on this host",
    );
    const requests = standIn.requests.slice(asked);
    assert.deepEqual(
      requests.map((request) => [request.request, request['machine_name']]),
      [['archive-info', MACHINE]],
    );
    assert.equal(receiver.requests.filter((request) => request.method === 'PUT').length, 0, 'nothing was uploaded');

    const json = await verify('--json');
    assert.equal(json.code, 0);
    const report = JSON.parse(json.stdout) as JsonReport;
    assert.equal(report.ok, true);
    assert.equal(report.exitCode, 0);
    assert.ok(report.checks.length > 20);
  });

  it('fails with exit 66 and the fix when the Curve secret key file is missing, and does not ask Lighthouse', async () => {
    const file = join(curveDir, 'secret', `${MACHINE}-spark_private.sec`);
    await rename(file, `${file}.away`);
    try {
      const asked = standIn.requests.length;
      const result = await verify();
      assert.equal(result.code, 66, result.stdout);
      assert.equal(
        line(result.stdout, 'Curve secret key'),
        `FAIL Curve secret key: ${file}: missing; install the worker's key: spark keytool install-worker-key <id>.key_secret, then dpkg-reconfigure spark-ts`,
      );
      assert.equal(line(result.stdout, 'Lighthouse'), 'SKIP Lighthouse: skipped: needs the Curve key files (see above)');
      assert.match(result.stdout, /\nspark verify: 1 problem \(exit 66: a missing file\)\n$/);
      assert.equal(standIn.requests.length, asked);
    } finally {
      await rename(`${file}.away`, file);
    }
  });

  it('fails with exit 78 and the chmod to run when the Curve secret key is readable by others', async () => {
    const file = join(curveDir, 'secret', `${MACHINE}-spark_private.sec`);
    await chmod(file, 0o644);
    try {
      const result = await verify();
      assert.equal(result.code, 78, result.stdout);
      assert.equal(
        line(result.stdout, 'Curve secret key'),
        `FAIL Curve secret key: ${file}: mode 0644, should be 0600; run: chmod 0600 ${file}`,
      );
      // The connector's own check refuses the key as well: verify uses its code.
      assert.match(
        line(result.stdout, 'Lighthouse'),
        /^FAIL Lighthouse: .*the secret key is readable by group or others \(mode 0644\); run: chmod 600 /,
      );
    } finally {
      await chmod(file, 0o600);
    }
  });

  it("fails with exit 78 when the Lighthouse server key is not Lighthouse's: the CURVE handshake does not complete", async () => {
    const pub = join(curveDir, `${MACHINE}_lighthouse-server.pub`);
    const good = await readFile(pub, 'utf8');
    await keytool('key-new', '--id=impostor', '--name=Impostor', '--email=i@example.org', join(dir, 'impostor'));
    await keytool('install-server-key', '--force', '--config', configFile, join(dir, 'impostor', 'impostor.key'));
    try {
      const result = await verify();
      assert.equal(result.code, 78, result.stdout);
      assert.match(
        line(result.stdout, 'Lighthouse'),
        new RegExp(
          `^FAIL Lighthouse: no reply from Lighthouse at tcp://127\\.0\\.0\\.1:\\d+ within 2000 ms: the CURVE handshake did not complete.*; the server public key in ${pub} is probably not Lighthouse's$`,
        ),
      );
      assert.equal(
        line(result.stdout, 'archive upload'),
        "SKIP archive upload: skipped: needs Lighthouse's archive-info, which it did not give (see above)",
      );
    } finally {
      await writeFile(pub, good);
    }
  });

  it('fails with exit 78 when a Redis password file no longer matches the ACL', async () => {
    const file = join(credentialsDir, 'spark-builder.password');
    const good = await readFile(file, 'utf8');
    await chmod(file, 0o600);
    await writeFile(file, 'a-password-redis-does-not-know\n');
    await chmod(file, 0o400);
    try {
      const result = await verify();
      assert.equal(result.code, 78, result.stdout);
      assert.match(
        line(result.stdout, 'Redis user spark-builder'),
        new RegExp(
          `^FAIL Redis user spark-builder: cannot log in with ${credentialsDir}/spark-builder\\.password: .*WRONGPASS .*; the password file and Redis's ACL file differ: run spark redis-acl, then systemctl restart redis-server@spark$`,
        ),
      );
      assert.match(line(result.stdout, 'Redis user spark-signer'), /^OK /);
      assert.ok(!result.stdout.includes('a-password-redis-does-not-know'), 'no password is printed');
    } finally {
      await chmod(file, 0o600);
      await writeFile(file, good);
      await chmod(file, 0o400);
    }
  });

  it('fails with exit 69 for a suite debspawn has no image for, naming the command that makes it', async () => {
    await writeConfig("Suites = ['bookworm', 'spark-verify-nosuchsuite']");
    try {
      const result = await verify();
      assert.equal(result.code, 69, result.stdout);
      assert.match(line(result.stdout, 'debspawn image bookworm/amd64'), /^OK /);
      assert.equal(
        line(result.stdout, 'debspawn image spark-verify-nosuchsuite/amd64'),
        'FAIL debspawn image spark-verify-nosuchsuite/amd64: missing: jobs for spark-verify-nosuchsuite on amd64 would be rejected ("missing an environment"); run: debspawn create --arch=amd64 spark-verify-nosuchsuite',
      );
      const report = JSON.parse((await verify('--json')).stdout) as JsonReport;
      assert.equal(report.exitCode, 69);
      assert.deepEqual(
        report.checks.filter((check) => check.status === 'problem').map((check) => [check.check, check.kind]),
        [['debspawn image spark-verify-nosuchsuite/amd64', 'unavailable']],
      );
    } finally {
      await writeConfig();
    }
  });

  it('fails with exit 69 when Redis does not answer, and 66 when the config file is missing', async () => {
    await redis.kill();
    try {
      const result = await verify();
      assert.equal(result.code, 69, result.stdout);
      assert.match(
        line(result.stdout, 'Redis'),
        /^FAIL Redis: redis:\/\/127\.0\.0\.1:\d+ does not answer: .*ECONNREFUSED.*; is it running\? \(for the worker's own Redis, redis-server@spark .*: systemctl status redis-server@spark\)$/,
      );
    } finally {
      await redis.restart();
    }
    const missing = await runSpark((io) => verifyCommand(['--config', join(dir, 'nothing.toml')], io, { isRoot: true }));
    assert.equal(missing.code, 66);
    assert.match(missing.stdout, /^FAIL config: .*nothing\.toml: cannot read config: file not found$/m);
  });
  it("fails with exit 78 while sudo still lets laniakea-spark's user run debspawn as root, naming the rule's file", async () => {
    // Real sudo, asked about real users: root may run anything (the host's /etc/sudoers says so),
    // nobody may run nothing; a user that does not exist is not asked about.
    const left = await verifyWith({ laniakeaSparkUsers: ['root', 'spark-verify-no-such-user'] });
    assert.equal(left.code, 78, left.stdout);
    assert.match(
      line(left.stdout, 'sudo for laniakea-spark'),
      /^FAIL sudo for laniakea-spark: sudo still lets laniakea-spark's user run debspawn as root \(root may run \/usr\/bin\/debspawn\): whoever can act as that user is root \(debspawn login, debspawn run --build-dir \/\); remove that rule \(see \/etc\/sudoers\b.*\), spark-builder needs none of it$/,
    );
    const gone = await verifyWith({ laniakeaSparkUsers: ['nobody'] });
    assert.equal(gone.code, 0, gone.stdout);
    assert.match(
      line(gone.stdout, 'sudo for laniakea-spark'),
      /^OK {3}sudo for laniakea-spark: sudo lets nobody run no debspawn \(\/usr\/bin\/debspawn.*\) as root$/,
    );
  });

  it('fails with exit 78 when Redis may evict keys, naming its config file', async () => {
    const evicting = await startRedisServer({ args: ['--maxmemory-policy', 'allkeys-lru'] });
    const good = await readFile(configFile, 'utf8');
    try {
      // A Redis without users: the worker then also lacks RedisCredentialsDir (its own problem, also exit 78).
      await writeFile(
        configFile,
        good.replace(/^RedisUrl = .*$/m, `RedisUrl = '${evicting.url}'`).replace(/^RedisCredentialsDir = .*\n/m, ''),
      );
      const result = await verify();
      assert.equal(result.code, 78, result.stdout);
      assert.match(line(result.stdout, 'Redis'), /^OK {3}Redis: redis:\/\/127\.0\.0\.1:\d+ answers$/);
      assert.match(
        line(result.stdout, 'Redis server'),
        /^FAIL Redis server: redis:\/\/127\.0\.0\.1:\d+ \(no config file\) has maxmemory-policy allkeys-lru: it may evict BullMQ's keys, losing jobs; set maxmemory-policy noeviction there and restart it \(dpkg-reconfigure spark-ts sets it for the worker's own Redis, redis-server@spark .*\)$/,
      );
    } finally {
      await writeFile(configFile, good);
      await evicting.stop();
    }
  });
});
