/*
 * npm run test:package [-- --suite trixie] — the worker installed from its
 * Debian package in a booted bookworm (or trixie) machine, with no checkout
 * inside, under a real systemd as PID 1:
 *
 *   `npm run package` builds revision 1 and revision 2 of spark-ts on the
 *   host (buildPackage, lintian clean). On bookworm the host's own nodejs
 *   package (NodeSource's 20, remade with dpkg-repack: rootfs.ts,
 *   cachedNodejsDeb) is installed in the machine first, as an operator on
 *   bookworm installs NodeSource's; trixie's own nodejs is new enough. Then
 *   `apt-get install ./spark-ts_….deb` takes the other Depends from the root
 *   file system and the Debian mirror. The README's "Install from the
 *   package" follows as an operator runs it (spark.toml, keys with `spark
 *   keytool`, `dpkg-reconfigure spark-ts`, `systemctl enable --now
 *   spark.target`); `spark verify`; a package job through the whole chain
 *   against the Lighthouse stand-in and the upload receiver on the host;
 *   the signer's key made an encrypted systemd credential with the packaged
 *   `spark keytool install-signer-key` (README step 3, "The key never on
 *   disk in clear"; the clear file shredded; signer-credential.ts, shared
 *   with run.ts); an upgrade to revision 2 with a build in flight; `apt-get
 *   purge`; and an install again onto the spark.toml, keys and key
 *   credential the purge kept.
 *
 * The only files the machine gets from the host are the two .debs, nodejs's,
 * the operator's spark.toml and keys, and the test's host runner: builds go
 * through sudo and the packaged build helper, whose `debspawn` (found on
 * sudo's secure_path) is tools/host-runner/debspawn installed as
 * /usr/local/bin/debspawn, because nested containers do not work inside
 * nspawn here (as in run.ts). The host's own Redis serves "another
 * application" throughout, and must come out of the purge as it went in.
 */
import { execFile } from 'node:child_process';
import { existsSync } from 'node:fs';
import { copyFile, readdir, readFile, writeFile } from 'node:fs/promises';
import { basename, dirname, join } from 'node:path';
import { parseArgs, promisify } from 'node:util';
import { REDIS_USERS } from '@spark/service';
import { freePort, waitFor } from '@spark/testing';
import { assertLintianClean, buildPackage } from '../package/build.js';
import { POLL_MS, requestsFor } from './checks.js';
import { checkout, machineTest } from './frame.js';
import { cachedNodejsDeb, cachedRootfs, type Suite } from './rootfs.js';
import { CREDENTIAL_DROP_IN, ENCRYPTED_CREDENTIAL, keyToCredential } from './signer-credential.js';
import { startWorld } from './world.js';

const run = promisify(execFile);

/** `--suite trixie`: a Debian 13 machine, whose own nodejs (20.19) apt installs as the package's dependency. */
const SUITES: readonly Suite[] = ['bookworm', 'trixie'];
const MACHINE = 'spark-package-test';
/** The packages, read-only in the machine. */
const DEBS = '/root/debs';
/** What the operator brings (spark.toml, keys) and the test's host runner. */
const SHARE = '/root/package-share';
const CONFIG = '/etc/laniakea/spark.toml';
/** WorkspaceRoot: not the default, as on a host with a separate build disk. */
const WORKSPACE_ROOT = '/srv/spark-builds';
const REDIS_SOCKET = '/run/redis-spark/redis-server.sock';
/** The real debspawn's images, for `spark verify`'s image check (the host runner's `list` reads them). */
const DEBSPAWN_IMAGES = '/var/lib/debspawn/images';
const UNITS = ['spark-connector', 'spark-builder@1', 'spark-signer', 'spark-uploader'];
/** What the package and its setup made, which purge must remove (the binary package's own files, then setup-host's). */
const MADE_BY_PACKAGE = [
  '/usr/lib/spark-ts',
  '/usr/bin/spark',
  '/usr/sbin/spark-connector',
  '/usr/sbin/spark-build-helper',
  '/usr/lib/systemd/system/spark.target',
  '/usr/lib/systemd/system/spark-builder@.service',
  '/usr/lib/sysusers.d/spark-ts.conf',
  '/etc/sudoers.d/10spark-builder',
  '/etc/redis/redis-spark.conf',
  '/etc/redis/spark-users.acl',
  '/var/lib/redis/spark',
  '/etc/laniakea/redis',
  // Not its directory: the operator's key-credential.conf (README step 3) stays in it.
  '/etc/systemd/system/spark-signer.service.d/workspace.conf',
  '/etc/systemd/system/spark-uploader.service.d',
  '/etc/logrotate.d/spark',
  '/etc/tmpfiles.d/spark.conf',
  '/var/lib/spark-build-helper',
];
/** What is the operator's, which purge must keep: spark.toml, the keys, the signer's key as an encrypted credential. */
const OPERATORS = [CONFIG, '/etc/laniakea/keys', ENCRYPTED_CREDENTIAL, CREDENTIAL_DROP_IN];
/** Their contents, compared before and after the purge. */
const OPERATORS_SUMS = `sha256sum ${CONFIG} ${ENCRYPTED_CREDENTIAL} ${CREDENTIAL_DROP_IN}; ls -R /etc/laniakea/keys`;

await machineTest('package', { root: 'it builds packages and boots a machine with systemd-nspawn', dist: false }, async (t) => {
  const { say, check, allPassed, work, share } = t;
  const { values } = parseArgs({ options: { suite: { type: 'string', default: 'bookworm' } }, strict: true });
  const suite = values.suite as Suite;
  if (!SUITES.includes(suite)) {
    console.error(`test:package: --suite must be one of ${SUITES.join(', ')}, not ${JSON.stringify(values.suite)}`);
    return 64;
  }
  const debs = join(work, 'debs');
  // --- The packages: two builds of this checkout, and the host's nodejs.
  const built: string[] = [];
  const packaged = await check('npm run package builds revisions 1 and 2, lintian clean', async () => {
    for (const revision of [1, 2]) {
      const result = await buildPackage({ revision, outDir: debs });
      assertLintianClean(result);
      built.push(basename(result.deb));
    }
    // Bookworm's nodejs is 18: the host's NodeSource package comes along, as an operator adds NodeSource's repository.
    if (suite === 'bookworm') {
      const node = await cachedNodejsDeb(say);
      await copyFile(node, join(debs, basename(node)));
      built.push(basename(node));
    }
    return built.join(', ');
  });
  if (!packaged) return 1;
  const [first, second, nodejs] = built as [string, string, string | undefined];
  const version = (deb: string) => deb.split('_')[1] as string;

  // --- The world outside the worker, on the host: Lighthouse, the archive, the package mirror.
  const [hostRedisPort, connectorPort, builderPort, signerPort, uploaderPort] = await Promise.all([
    freePort(),
    freePort(),
    freePort(),
    freePort(),
    freePort(),
  ]);
  const { uploads, archive, key, trusted, standIn, lighthousePublic } = await startWorld(
    t,
    'Spark Package Test <spark-package-test@example.invalid>',
  );

  // What the operator brings: the OpenPGP key export, Lighthouse's public key, spark.toml; and the host runner.
  await writeFile(join(share, 'package-test_secret.gpg'), await readFile(key.secretKeyFile), { mode: 0o600 });
  await writeFile(join(share, 'lighthouse.key'), lighthousePublic);
  await copyFile(join(checkout, 'tools/host-runner/debspawn'), join(share, 'host-runner-debspawn'));
  // DrainTimeout is left at its default (600 s): the upgrade waits for the build in flight.
  await writeFile(
    join(share, 'spark.toml'),
    `LighthouseServer = '${standIn.endpoint}'
AcceptedJobs = ['package-build']
MachineOwner = 'Spark package test'
MachineName = '${MACHINE}'
GpgKeyID = '${key.fingerprint}'
GpgSecretKeyFile = '/etc/laniakea/keys/${MACHINE}_secret.gpg'
Architectures = ['amd64']
WorkspaceRoot = '${WORKSPACE_ROOT}/'

[connector]
PollInterval = 1
MetricsPort = ${connectorPort}

[builder]
StatusInterval = 2
Suites = ['bookworm']
MetricsPort = ${builderPort}

[signer]
MetricsPort = ${signerPort}

[uploader]
MetricsPort = ${uploaderPort}
`,
  );

  // --- The machine: the packages and the share, nothing of this checkout, no node from the host.
  const rootfs = await cachedRootfs(say, suite);
  const m = await t.boot({
    rootfs,
    name: MACHINE,
    bindReadOnly: { [debs]: DEBS, ...(existsSync(DEBSPAWN_IMAGES) ? { [DEBSPAWN_IMAGES]: DEBSPAWN_IMAGES } : {}) },
    bind: { [share]: SHARE },
  });
  /** What apt, dpkg and the maintainer scripts printed, searched for Redis passwords before the purge. */
  const outputs: string[] = [];
  const apt = async (args: string) => {
    const output = await m.sh(`DEBIAN_FRONTEND=noninteractive apt-get ${args} 2>&1`, { timeoutMs: 600_000 });
    outputs.push(output);
    return output;
  };
  const mainPid = async (unit: string) => Number((await m.sh(`systemctl show -p MainPID --value ${unit}`)).trim());
  const exists = async (path: string) => (await m.exec(['test', '-e', path])).code === 0;

  // The host's own Redis, as another application uses it (the root file system's redis.conf says port 0).
  const hostRedis = async () =>
    [
      (await m.sh('sha256sum /etc/redis/redis.conf')).trim(),
      `pid ${(await m.sh('systemctl show -p MainPID --value redis-server')).trim()}`,
      `key ${(await m.sh(`redis-cli -p ${hostRedisPort} GET other-application-key`)).trim()}`,
    ].join(', ');
  let hostRedisBefore = '';
  await check("the host's own Redis serves another application (redis-server.service, /etc/redis/redis.conf)", async () => {
    await m.sh(`sed -i -E 's/^port 0$/port ${hostRedisPort}/' /etc/redis/redis.conf && systemctl restart redis-server`);
    await waitFor(
      'the host Redis answers',
      async () => (await m.exec(['redis-cli', '-p', String(hostRedisPort), 'PING'])).stdout.includes('PONG'),
      { timeoutMs: 20_000, intervalMs: POLL_MS },
    );
    await m.sh(`redis-cli -p ${hostRedisPort} SET other-application-key still-here`);
    hostRedisBefore = await hostRedis();
    return `port ${hostRedisPort}`;
  });

  // --- README "Install from the package", as an operator on bookworm.
  const installing = nodejs
    ? `nodejs first (the host's, repacked), then apt-get install ./${first}`
    : `apt-get install ./${first} (nodejs from ${suite})`;
  const installed = await check(`${suite}: ${installing}`, async () => {
    if (await exists('/opt/spark-ts')) throw new Error('the machine has a checkout at /opt/spark-ts');
    if (await exists('/usr/bin/node')) throw new Error('the machine has a node before the packages are installed');
    // The root file system's package lists are as old as it is: an operator updates them first.
    await apt('update -qq');
    if (nodejs) await apt(`install -y -qq ${DEBS}/${nodejs}`);
    const output = await apt(`install -y ${DEBS}/${first}`);
    const node = (await m.sh("node --version; dpkg-query -W -f '${Version}' nodejs")).trim().replace('\n', ', nodejs ');
    const state = (await m.sh("dpkg-query -W -f '${Status} ${Version}' spark-ts")).trim();
    if (state !== `install ok installed ${version(first)}`) throw new Error(`dpkg: spark-ts ${state}\n${output}`);
    // Without spark.toml, the postinst's setup-host says what to write and stops there.
    if (!output.includes(`no ${CONFIG} yet: write it (README, step 2), then run dpkg-reconfigure spark-ts`))
      throw new Error(`the postinst did not say spark.toml is missing:\n${output.slice(-3000)}`);
    const users = (await m.sh('id -nG spark-connector; id -nG spark-builder; id -nG spark-signer; id -nG spark-uploader')).trim();
    if (users.split('\n').some((groups) => groups !== 'lkspark')) throw new Error(`the services' groups: ${users}`);
    const helperDir = (await m.sh("stat -c '%U %a' /var/lib/spark-build-helper")).trim();
    if (helperDir !== 'root 700') throw new Error(`/var/lib/spark-build-helper: ${helperDir}`);
    const spark = (await m.sh('spark --version')).trim();
    return `node ${node}; spark-ts ${state.split(' ').pop()}; spark --version: ${spark}; users in lkspark; /var/lib/spark-build-helper root 0700`;
  });
  if (!installed) return 1;

  const configured = await check(
    'spark.toml, keys with spark keytool, dpkg-reconfigure spark-ts, systemctl enable --now spark.target',
    async () => {
      await m.sh(`install -d -m 0755 /etc/laniakea && install -m 0644 ${SHARE}/spark.toml ${CONFIG}`);
      await m.sh(`spark config check --config ${CONFIG} >/dev/null`);
      await m.sh(
        `spark keytool key-new --id=${MACHINE} --name='Package Test Worker' --email=${MACHINE}@example.invalid --organization='Spark' ${SHARE}/keys`,
      );
      await m.sh(`spark keytool install-worker-key ${SHARE}/keys/${MACHINE}.key_secret`);
      await m.sh(
        `install -d -m 0755 /etc/laniakea/keys && install -m 0600 ${SHARE}/package-test_secret.gpg /etc/laniakea/keys/${MACHINE}_secret.gpg`,
      );
      await m.sh(`spark keytool install-server-key ${SHARE}/lighthouse.key`);
      // Test only: the host runner is the debspawn the helper runs (sudo's secure_path finds /usr/local/bin first).
      await m.sh(`install -m 0755 ${SHARE}/host-runner-debspawn /usr/local/bin/debspawn`);
      const output = await m.sh('DEBIAN_FRONTEND=noninteractive dpkg-reconfigure spark-ts 2>&1', { timeoutMs: 300_000 });
      outputs.push(output);
      await m.sh('systemctl enable --now spark.target');
      // Lighthouse trusts the worker's public key (lk-keytool install-trusted-key on the master).
      await writeFile(join(trusted, `${MACHINE}.key`), await readFile(join(share, 'keys', `${MACHINE}.key`)));
      const said = output.split('\n').filter((line) => /^redis-server@spark on |: added /.test(line));
      return said.join('; ');
    },
  );
  if (!configured) return 1;

  await check('spark.target starts all four services, each as its own user, from /usr/sbin and /usr/lib/spark-ts', async () => {
    await waitFor('the four services active', async () => (await m.exec(['systemctl', 'is-active', ...UNITS])).code === 0, {
      timeoutMs: 30_000,
      intervalMs: POLL_MS,
    });
    const expected = ['spark-connector', 'spark-builder', 'spark-signer', 'spark-uploader'];
    let seen: string[] = [];
    await waitFor(
      'each service running as its user',
      async () => {
        seen = [];
        for (const unit of UNITS)
          seen.push((await m.exec(['ps', '-o', 'user:32=,args=', '-p', String(await mainPid(unit))])).stdout.trim());
        // Once exec'd: the packaged launcher's node running the service's bundle as the service's user.
        return seen.every((line, i) => {
          const service = expected[i] as string;
          return new RegExp(`^${service} +/usr/bin/node .*/usr/lib/spark-ts/node_modules/@spark/${service.slice(6)}/dist/main\\.js `).test(
            line,
          );
        });
      },
      { timeoutMs: 20_000, intervalMs: POLL_MS },
    ).catch((error: Error) => {
      throw new Error(`${error.message}: ${seen.join('; ')}`);
    });
    const execStart = (await m.sh(`systemctl show -p ExecStart --value ${UNITS.join(' ')}`)).match(/path=(\S+)/g) ?? [];
    if (execStart.some((path) => !/^path=\/usr\/sbin\/spark-(connector|builder|signer|uploader)$/.test(path)))
      throw new Error(`the units run ${execStart.join(', ')}`);
    return seen
      .map((line) =>
        line
          .split(/\s+/)
          .filter((word, i) => i === 0 || word.endsWith('main.js'))
          .join(' '),
      )
      .join('; ');
  });

  const redisCli = (user: string, command: string) =>
    m.sh(
      `REDISCLI_AUTH=$(cat /etc/laniakea/redis/${user}.password) redis-cli --no-auth-warning --user ${user} -s ${REDIS_SOCKET} ${command}`,
    );
  await check("the worker's own Redis: the default user refused, each service its own ACL user; the host's Redis as it was", async () => {
    const anonymous = await m.exec(['redis-cli', '-s', REDIS_SOCKET, 'PING']);
    if (!/NOAUTH/.test(anonymous.stdout + anonymous.stderr)) throw new Error(`redis-cli without a password: ${anonymous.stdout}`);
    let users: string[] = [];
    await waitFor(
      'all four services connected with their users',
      async () => {
        const clients = await redisCli('spark-operator', 'CLIENT LIST');
        users = [...new Set([...clients.matchAll(/ user=(\S+)/g)].map((match) => match[1] ?? ''))].sort();
        return ['spark-builder', 'spark-connector', 'spark-signer', 'spark-uploader'].every((u) => users.includes(u));
      },
      { timeoutMs: 30_000, intervalMs: POLL_MS },
    ).catch((error: Error) => {
      throw new Error(`${error.message}: connected users ${users.join(', ')}`);
    });
    const passwords = (await m.sh('ls /etc/laniakea/redis')).trim().split('\n');
    if (passwords.length !== Object.keys(REDIS_USERS).length) throw new Error(`/etc/laniakea/redis holds ${passwords.join(', ')}`);
    const host = await hostRedis();
    if (host !== hostRedisBefore) throw new Error(`the host's Redis: before ${hostRedisBefore}; after ${host}`);
    return `unauthenticated: NOAUTH; connected as ${users.join(', ')}; ${passwords.length} password files; host Redis unchanged`;
  });

  await check('spark verify as root', async () => {
    type Report = { exitCode: number; checks: { check: string; status: string; message: string }[] };
    const report = JSON.parse((await m.exec(['spark', 'verify', '--json', '--config', CONFIG], { timeoutMs: 180_000 })).stdout) as Report;
    const failing = report.checks.filter((c) => c.status !== 'ok').map((c) => `${c.status} ${c.check}: ${c.message}`);
    if (report.exitCode !== 0) throw new Error(`exit ${report.exitCode}\n${failing.join('\n')}`);
    return `exit 0, ${report.checks.length} checks${failing.length ? `; ${failing.join('; ')}` : ''}`;
  });

  // --- A job through the chain.
  const ended = (uuid: string) => requestsFor(standIn.requests, uuid).some((r) => r === 'job-success' || r === 'job-failed');
  const dudFor = async (uuid: string) => {
    for (const name of (await readdir(uploads).catch(() => [] as string[])).filter((n) => n.endsWith('.dud'))) {
      const text = await readFile(join(uploads, name), 'utf8');
      if (text.includes(`X-Spark-Job: ${uuid}`)) return { name, text };
    }
    return null;
  };
  /** Waits for the job to end at Lighthouse and checks it succeeded once, its .changes and .dud signed. */
  const succeeded = async (name: string, uuid: string) => {
    await waitFor(`${name} ended`, () => ended(uuid), { timeoutMs: 300_000, intervalMs: POLL_MS });
    const seen = requestsFor(standIn.requests, uuid);
    if (seen.filter((r) => r === 'job-success').length !== 1 || seen.includes('job-failed'))
      throw new Error(`Lighthouse heard for ${name}: ${seen.join(', ')}`);
    const dud = await waitFor(`${name}'s .dud in the archive`, () => dudFor(uuid), { timeoutMs: 60_000, intervalMs: POLL_MS });
    if (!/X-Spark-Result: success/.test(dud.text)) throw new Error(`${dud.name} does not say success`);
    const changes = (await readdir(uploads)).find((n) => n.startsWith(`${name}_1.0_`) && n.endsWith('.changes'));
    if (!changes) throw new Error(`no ${name} .changes in the archive`);
    for (const file of [changes, dud.name]) await run('gpgv', ['--keyring', key.keyring, join(uploads, file)]);
    return { seen, files: `${changes}, ${dud.name}` };
  };

  await check('a package job: built through sudo and the packaged helper, signed, uploaded, job-success', async () => {
    const job = await archive.packageJob({ name: 'hello-package', version: '1.0' });
    standIn.addJob(job);
    const { seen, files } = await succeeded('hello-package', job.uuid);
    const log = await m.sh(`cat ${WORKSPACE_ROOT}/logs/${job.uuid}*.log`);
    if (!log.includes('sudo -n /usr/sbin/spark-build-helper build'))
      throw new Error('the build log shows no build through sudo and /usr/sbin/spark-build-helper');
    if (!log.includes('host-runner: building'))
      throw new Error('the build log shows no build by /usr/local/bin/debspawn (the host runner)');
    return `${seen.join(' → ')}; ${files} verified with gpgv`;
  });

  // README step 3, "The key never on disk in clear": from here on (the upgrade, the purge, the install again)
  // the key is an encrypted credential.
  await check(
    'the key as an encrypted systemd credential with the packaged spark keytool install-signer-key: the clear file shredded, a job signed, no clear copy on disk',
    () =>
      keyToCredential(m, {
        armoredKey: key.secretKeyFile,
        fingerprint: key.fingerprint,
        config: CONFIG,
        keyFile: `/etc/laniakea/keys/${MACHINE}_secret.gpg`,
        shareName: basename(SHARE),
        signJob: async () => {
          const job = await archive.packageJob({ name: 'credential-package', version: '1.0' });
          standIn.addJob(job);
          return (await succeeded('credential-package', job.uuid)).files;
        },
      }),
  );

  // --- Upgrade to revision 2 with a build in flight.
  const secrets = () => m.sh(`sha256sum ${CONFIG} /etc/laniakea/redis/*.password /etc/redis/spark-users.acl`);
  await check(`apt-get install ./${second} with a build in flight: the job succeeds once, secrets and spark.toml kept`, async () => {
    const before = await secrets();
    const redisPid = await mainPid('redis-server@spark');
    const pids = await Promise.all(UNITS.map(mainPid));
    const job = await archive.packageJob({ name: 'upgrade-package', version: '1.0', buildCommands: ['sleep 15'] });
    standIn.addJob(job);
    await waitFor('the build running', async () => (await m.exec(['pgrep', '-f', '^sleep 15$'])).code === 0, {
      timeoutMs: 120_000,
      intervalMs: POLL_MS,
    });
    const output = await apt(`install -y ${DEBS}/${second}`);
    const state = (await m.sh("dpkg-query -W -f '${Status} ${Version}' spark-ts")).trim();
    if (state !== `install ok installed ${version(second)}`) throw new Error(`dpkg: spark-ts ${state}\n${output}`);
    const { seen } = await succeeded('upgrade-package', job.uuid);
    // DrainTimeout (600 s by default) outlasts the build: the builder finishes it before it restarts.
    if (seen.includes('job-rejected')) throw new Error(`the job was handed back: ${seen.join(', ')}`);
    const after = await secrets();
    if (after !== before) throw new Error(`spark.toml or the Redis passwords changed:\nbefore ${before}\nafter ${after}`);
    if ((await mainPid('redis-server@spark')) !== redisPid) throw new Error('the upgrade restarted redis-server@spark');
    const now = await Promise.all(UNITS.map(mainPid));
    const kept = UNITS.filter((_, i) => now[i] === pids[i]);
    if (kept.length > 0) throw new Error(`not restarted on the new version: ${kept.join(', ')}`);
    await waitFor('the four services active again', async () => (await m.exec(['systemctl', 'is-active', ...UNITS])).code === 0, {
      timeoutMs: 30_000,
      intervalMs: POLL_MS,
    });
    return `${version(first)} → ${version(second)}; the job: ${seen.join(' → ')}; services restarted, redis-server@spark kept (pid ${redisPid}); spark.toml and ${after.split('\n').filter((line) => line.endsWith('.password')).length} password files unchanged`;
  });

  await check('no Redis password in what apt, dpkg-reconfigure and the maintainer scripts printed, or in the journal', async () => {
    const passwords = (await m.sh('cat /etc/laniakea/redis/*.password')).split('\n').filter(Boolean);
    if (passwords.length !== Object.keys(REDIS_USERS).length) throw new Error(`read ${passwords.length} passwords`);
    const journal = await m.sh('journalctl --no-pager -o cat');
    for (const [where, text] of [...outputs.map((t, i) => [`output ${i + 1}`, t] as const), ['the journal', journal] as const]) {
      if (passwords.some((password) => text.includes(password))) throw new Error(`a Redis password is in ${where}`);
    }
    return `${outputs.length} outputs, ${journal.split('\n').length} journal lines`;
  });

  // --- Remove, then purge.
  await check("apt-get remove spark-ts: the services stop; the worker's Redis, its queues and every file stay", async () => {
    const files = () => m.sh(`sha256sum ${CONFIG} /etc/laniakea/redis/*.password /etc/redis/redis-spark.conf /etc/redis/spark-users.acl`);
    const before = await files();
    const redisPid = await mainPid('redis-server@spark');
    await apt('remove -y spark-ts');
    const active = (await m.exec(['systemctl', 'is-active', 'spark.target', ...UNITS])).stdout.trim().split('\n');
    if (active.some((state) => state === 'active')) throw new Error(`after the remove: ${active.join(', ')}`);
    const state = (await m.sh("dpkg-query -W -f '${Status}' spark-ts")).trim();
    if (state !== 'deinstall ok config-files') throw new Error(`dpkg: spark-ts ${state}`);
    if ((await mainPid('redis-server@spark')) !== redisPid) throw new Error('the remove stopped or restarted redis-server@spark');
    if ((await files()) !== before) throw new Error('the remove changed spark.toml or the Redis files');
    const keys = (await redisCli('spark-admin', 'DBSIZE')).trim();
    return `spark.target and the services ${[...new Set(active)].join('/')}; dpkg: ${state}; redis-server@spark pid ${redisPid} kept, ${keys} keys`;
  });

  await check(
    "apt-get purge spark-ts: what the package made is gone; spark.toml, keys, the key credential and the host's Redis kept",
    async () => {
      const operatorsBefore = await m.sh(OPERATORS_SUMS);
      const output = await apt('purge -y spark-ts');
      const left = [];
      for (const path of MADE_BY_PACKAGE) if (await exists(path)) left.push(path);
      if (left.length > 0) throw new Error(`still there after the purge: ${left.join(', ')}\n${output.slice(-2000)}`);
      const units = (await m.exec(['systemctl', 'list-units', '--all', '--no-legend', 'spark*', 'redis-server@spark*'])).stdout.trim();
      const loaded = units.split('\n').filter((line) => line && !/not-found/.test(line));
      if (loaded.length > 0) throw new Error(`units still loaded:\n${loaded.join('\n')}`);
      // Nor a link that enabled one (spark.target, redis-server@spark), nor a drop-in but the operator's key-credential.conf.
      const links = (await m.sh("find /etc/systemd/system -name '*spark*' -o -path '*spark*.d/*'")).trim().split('\n').sort();
      const kept = [dirname(CREDENTIAL_DROP_IN), CREDENTIAL_DROP_IN];
      if (links.join('\n') !== kept.join('\n'))
        throw new Error(`in /etc/systemd/system:\n${links.join('\n')}\nexpected only ${kept.join(', ')}`);
      const running = (await m.exec(['pgrep', '-a', '-u', 'spark-connector,spark-builder,spark-signer,spark-uploader'])).stdout.trim();
      if (running) throw new Error(`still running: ${running}`);
      for (const path of OPERATORS) if (!(await exists(path))) throw new Error(`${path} is gone`);
      const operatorsAfter = await m.sh(OPERATORS_SUMS);
      if (operatorsAfter !== operatorsBefore) throw new Error(`spark.toml or the keys changed:\n${operatorsBefore}\n${operatorsAfter}`);
      const host = await hostRedis();
      if (host !== hostRedisBefore) throw new Error(`the host's Redis: before ${hostRedisBefore}; after ${host}`);
      return `${MADE_BY_PACKAGE.length} paths gone, no spark unit loaded; kept ${OPERATORS.join(', ')}; host Redis: same redis.conf, pid and key`;
    },
  );

  await check(
    `apt-get install ./${second} again onto the kept spark.toml, keys and key credential: the postinst sets the worker up, a job succeeds`,
    async () => {
      const output = await apt(`install -y ${DEBS}/${second}`);
      const redis = output.split('\n').find((line) => line.startsWith('redis-server@spark on '));
      if (!redis) throw new Error(`the postinst did not set the worker's Redis up:\n${output.slice(-3000)}`);
      await m.sh('systemctl enable --now spark.target');
      await waitFor('the four services active', async () => (await m.exec(['systemctl', 'is-active', ...UNITS])).code === 0, {
        timeoutMs: 30_000,
        intervalMs: POLL_MS,
      });
      const job = await archive.packageJob({ name: 'again-package', version: '1.0' });
      standIn.addJob(job);
      const { seen } = await succeeded('again-package', job.uuid);
      return `${redis}; the job: ${seen.join(' → ')}`;
    },
  );

  return allPassed() ? 0 : 1;
});
