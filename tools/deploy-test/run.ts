/*
 * npm run test:deploy [-- --from checkout] — the worker installed and run the
 * way the README tells an operator, under a real systemd as PID 1:
 *
 *   a cached bookworm root file system booted with systemd-nspawn; the
 *   worker installed from its Debian package (`npm run package` on the host;
 *   in the machine the host's NodeSource nodejs, then `apt-get install
 *   ./spark-ts_….deb`, spark.toml, keys, `dpkg-reconfigure spark-ts`,
 *   `systemctl enable --now spark.target`: nothing of this checkout in the
 *   machine) — or, with `--from checkout`, this checkout (built) bound
 *   read-only at /opt/spark-ts, a host set up by the install.sh of before
 *   the package (earlier-install.sh: launchers in /usr/local, units in
 *   /etc/systemd/system, services running), then today's
 *   `deploy/install.sh` (no --enable: what ran still runs), which builds
 *   the package from the checkout in the machine and installs it, its
 *   preinst moving the earlier files aside; jobs pushed through the whole
 *   chain against the Lighthouse stand-in and the upload receiver on the host
 *   (the machine shares the host's loopback); then, in the same boot, a
 *   builder stopped mid-build, kill -9 of every service, a signer restart
 *   mid-job, the signer's key moved into an encrypted systemd credential (the
 *   clear file shredded; the rest of the run signs with it), and `spark
 *   status` as an operator.
 *
 * Redis runs as setup-host sets it up (install.sh and the package share it): the worker's own instance,
 * redis-server@spark, one ACL user per service, the default user off; the
 * host's own Redis, serving "another application", stays as it was.
 * WorkspaceRoot is not the default (a separate build disk), and the signer's
 * audit log is in its LogsDirectory= under /var/log, rotated by logrotate. At the end a hostile builder (hostile-builder.ts) runs
 * in the machine as spark-builder, with the builder unit's settings, its own
 * Redis password and its sudo rule, tries every escape, and hands the signer
 * forged results for real jobs; an honest job after it must still succeed.
 *
 * Builds go through sudo and the build helper exactly as in production; the
 * `debspawn` the helper runs is tools/host-runner/debspawn (nested containers
 * do not work inside nspawn here), installed as /usr/local/bin/debspawn.
 */
import { execFile } from 'node:child_process';
import { copyFile, readdir, readFile, writeFile } from 'node:fs/promises';
import { basename, join } from 'node:path';
import { parseArgs, promisify } from 'node:util';
import { build } from 'esbuild';
import { REDIS_USERS } from '@spark/service';
import { archiveTargetsKey, DEFAULT_QUEUE_PREFIX } from '@spark/protocol';
import { freePort, PROGRAM_BUNDLE_OPTIONS, waitFor } from '@spark/testing';
import { linkedDependencyDirs, POLL_MS, requestsFor } from './checks.js';
import { checkout, machineTest } from './frame.js';
import type { Machine } from './machine.js';
import { packageIntoShare } from './package-share.js';
import { cachedRootfs } from './rootfs.js';
import { keyToCredential } from './signer-credential.js';
import { startWorld } from './world.js';

const run = promisify(execFile);

/** The machine name; also in the worker's `MachineName`. */
const MACHINE = 'spark-deploy-test';
/** Where the test and the machine exchange files (keys, spark.toml). */
const SHARE = '/root/deploy-share';
/** WorkspaceRoot: not the default, as on a host with a separate build disk; setup-host's drop-ins follow it. */
const WORKSPACE_ROOT = '/srv/spark-builds';
const WORKSPACES = `${WORKSPACE_ROOT}/workspaces`;
/** The signer's audit log: the default in its unit's LogsDirectory=. */
const AUDIT_LOG = '/var/log/spark-signer/signer.log';
/** The worker's own Redis (redis-server@spark), which setup-host names in spark.toml as RedisUrl. */
const REDIS_SOCKET = '/run/redis-spark/redis-server.sock';

/** Where the package way puts the hostile builder's bundle in the machine (the builder unit hides /root). */
const HOSTILE_BUNDLE = '/usr/local/lib/spark-deploy-test/hostile-builder.mjs';

/**
 * How the worker is installed: from its Debian package (the README's first
 * way), or from a checkout with install.sh, which builds that package and
 * installs it. Either way the host ends with the package's files.
 */
type From = 'package' | 'checkout';

/** The installed worker as an operator sees it: the package's paths and commands. */
const way = {
  /** What sets the host up again after spark.toml changed, as the checks name it. */
  again: 'dpkg-reconfigure spark-ts',
  /** The writer named in the files setup-host writes and in its messages. */
  writer: '/usr/lib/spark-ts/setup-host',
  helper: '/usr/sbin/spark-build-helper',
  manDir: '/usr/share/man',
  completion: '/usr/share/bash-completion/completions/spark',
  /** The hostile builder's command line before its arguments, run in the builder unit. */
  hostile: ['/usr/bin/node', HOSTILE_BUNDLE],
};

/** What an earlier install.sh wrote that the package's files replace (its preinst moves them aside). */
const EARLIER_FILES = [
  '/usr/local/bin/spark',
  ...['connector', 'builder', 'signer', 'uploader'].map((service) => `/usr/local/bin/spark-${service}`),
  '/usr/local/sbin/spark-build-helper',
  '/etc/systemd/system/spark-signer.service',
  '/etc/systemd/system/spark-builder@.service',
  '/etc/systemd/system/spark.target',
  '/usr/local/share/man/man8/spark-signer.8',
  '/usr/local/share/bash-completion/completions/spark',
];

const { values: options } = parseArgs({ options: { from: { type: 'string', default: 'package' } }, strict: true });
if (options.from !== 'package' && options.from !== 'checkout') {
  console.error(`test:deploy: --from must be package or checkout, not ${JSON.stringify(options.from)}`);
  process.exit(64);
}
const from: From = options.from;

/** The unit's sandboxing settings that matter for sudo, to run a command under them with systemd-run. */
async function unitProperties(m: Machine, unit: string): Promise<string[]> {
  const fragment = (await m.sh(`systemctl show -p FragmentPath --value ${unit}`)).trim();
  const text = await m.sh(`cat ${fragment}`);
  const skip =
    /^(Type|ExecStart|Restart|RestartSec|TimeoutStopSec|KillMode|User|Group|Environment|Description|Documentation|After|Wants|PartOf|WantedBy)=/;
  const props: string[] = [];
  for (const line of text.split('\n')) {
    if (/^[A-Z][A-Za-z]+=/.test(line) && !skip.test(line)) props.push('-p', line);
  }
  return props;
}

await machineTest('deploy', { root: 'it boots a machine with systemd-nspawn', dist: from === 'checkout' }, async (t) => {
  const { say, check, results, share } = t;
  say(`installed from ${from === 'package' ? 'the Debian package' : 'this checkout with deploy/install.sh'}`);
  // --- The host's NodeSource nodejs (bookworm's is 18), the hostile builder as one file, and the package
  // (the package way) or the install.sh of before it (the checkout way, which builds the package in the machine).
  let deb = '';
  let nodejs = '';
  const packaged = await check(
    from === 'package' ? 'npm run package builds spark-ts, lintian clean; nodejs as NodeSource ships it' : 'nodejs as NodeSource ships it',
    async () => {
      ({ deb, nodejs } = await packageIntoShare(share, say, { spark: from === 'package' }));
      if (from === 'checkout') await copyFile(join(checkout, 'tools/deploy-test/earlier-install.sh'), join(share, 'earlier-install.sh'));
      await build({
        ...PROGRAM_BUNDLE_OPTIONS,
        entryPoints: [join(checkout, 'tools/deploy-test/hostile-builder.ts')],
        outfile: join(share, 'hostile-builder.mjs'),
        logLevel: 'error',
      });
      return [deb, nodejs].filter(Boolean).join(', ');
    },
  );
  if (!packaged) return 1;
  // --- The world outside the worker, on the host: Lighthouse, the archive, the package mirror.
  // hostRedisPort: the machine's own Redis (redis-server.service), as another application on the host uses it.
  const [hostRedisPort, connectorPort, builderPort, signerPort, uploaderPort] = await Promise.all([
    freePort(),
    freePort(),
    freePort(),
    freePort(),
    freePort(),
  ]);
  const { uploads, archive, key, trusted, board, standIn, lighthousePublic } = await startWorld(
    t,
    'Spark Deploy Test <spark-deploy-test@example.invalid>',
  );
  // What the operator brings: the OpenPGP key export, Lighthouse's public key, spark.toml.
  await writeFile(join(share, 'deploy-test_secret.gpg'), await readFile(key.secretKeyFile), { mode: 0o600 });
  await writeFile(join(share, 'lighthouse.key'), lighthousePublic);
  await writeFile(
    join(share, 'spark.toml'),
    `LighthouseServer = '${standIn.endpoint}'
AcceptedJobs = ['package-build']
MachineOwner = 'Spark deployment test'
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
DrainTimeout = 5
MetricsPort = ${builderPort}

[signer]
MetricsPort = ${signerPort}

[uploader]
MetricsPort = ${uploaderPort}
`,
  );

  // --- The machine.
  const rootfs = await cachedRootfs(say);
  const m = await t.boot({
    rootfs,
    name: MACHINE,
    bindReadOnly:
      from === 'checkout'
        ? {
            [checkout]: '/opt/spark-ts',
            ...Object.fromEntries(linkedDependencyDirs(checkout).map((dir) => [dir, dir])),
          }
        : {},
    bind: { [share]: SHARE },
  });

  // --- The host's own Redis, as another application uses it: a port, its own eviction policy, a key.
  // (The cached root file system's redis.conf says port 0, so that nothing listens before the test asks.)
  const hostRedis = async () => ({
    conf: (await m.sh('sha256sum /etc/redis/redis.conf')).trim(),
    pid: (await m.sh('systemctl show -p MainPID --value redis-server')).trim(),
  });
  const hostRedisCli = (command: string) => m.sh(`redis-cli -p ${hostRedisPort} ${command}`);
  let hostRedisBefore = { conf: '', pid: '' };
  await check("the host's own Redis serves another application (redis-server.service, /etc/redis/redis.conf)", async () => {
    await m.sh(
      `sed -i -E 's/^port 0$/port ${hostRedisPort}/; s/^# *maxmemory-policy .*/maxmemory-policy allkeys-lru/' /etc/redis/redis.conf && systemctl restart redis-server`,
    );
    await waitFor(
      'the host Redis answers',
      async () => (await m.exec(['redis-cli', '-p', String(hostRedisPort), 'PING'])).stdout.includes('PONG'),
      { timeoutMs: 20_000, intervalMs: POLL_MS },
    );
    await hostRedisCli('SET other-application-key still-here');
    hostRedisBefore = await hostRedis();
    return `port ${hostRedisPort}, maxmemory-policy allkeys-lru, no password`;
  });

  // --- README "Setting up a worker", step by step (keep the two in step).
  const installOutput: string[] = [];
  /** setup-host again, as the operator runs it (`dpkg-reconfigure spark-ts`); its exit code and output. */
  const setUpAgain = async () => {
    const result = await m.exec(['sh', '-c', 'DEBIAN_FRONTEND=noninteractive dpkg-reconfigure spark-ts 2>&1'], {
      timeoutMs: 600_000,
    });
    installOutput.push(result.stdout);
    return result;
  };
  /** The checkout way: a shell command in the checkout, its output kept (for the password check); its exit code and output. */
  const runInCheckout = async (command: string) => {
    const result = await m.exec(['sh', '-c', `cd /opt/spark-ts && ${command} 2>&1`], { timeoutMs: 900_000 });
    installOutput.push(result.stdout);
    return result;
  };
  /** The same, throwing on a failing exit; its output. */
  const inCheckout = async (command: string) => {
    const result = await runInCheckout(command);
    if (result.code !== 0) throw new Error(`${command}: exit ${result.code}\n${result.stdout.slice(-3000)}`);
    return result.stdout;
  };
  const earlierInstall = (args = '') => inCheckout(`SPARK_CHECKOUT=/opt/spark-ts bash ${SHARE}/earlier-install.sh ${args}`);
  /** The host as the earlier install.sh left it, for the move's check: Redis passwords, services' PIDs. */
  let beforeMove = { passwords: '', pids: '' };
  /** The main PIDs of connector, signer and uploader, in that order ("0" for one not running). */
  const servicePids = async () =>
    (await m.sh('systemctl show -p MainPID --value spark-connector spark-signer spark-uploader')).split(/\s+/).filter(Boolean).join(' ');
  const installed = await check('the README install steps run in the machine', async () => {
    // The root file system's package lists are as old as it is: an operator updates them first.
    const apt = (args: string) => m.sh(`DEBIAN_FRONTEND=noninteractive apt-get ${args} 2>&1`, { timeoutMs: 600_000 });
    await apt('update -qq');
    await apt(`install -y -qq ${SHARE}/${nodejs}`);
    if (from === 'package') installOutput.push(await apt(`install -y ${SHARE}/${deb}`));
    else await earlierInstall();
    await m.sh(`install -d -m 0755 /etc/laniakea && install -m 0644 ${SHARE}/spark.toml /etc/laniakea/spark.toml`);
    await m.sh('spark config check --config /etc/laniakea/spark.toml >/dev/null');
    await m.sh(
      `spark keytool key-new --id=${MACHINE} --name='Deploy Test Worker' --email=${MACHINE}@example.invalid --organization='Spark' ${SHARE}/keys`,
    );
    await m.sh(`spark keytool install-worker-key ${SHARE}/keys/${MACHINE}.key_secret`);
    await m.sh(
      `install -d -m 0755 /etc/laniakea/keys && install -m 0600 ${SHARE}/deploy-test_secret.gpg /etc/laniakea/keys/${MACHINE}_secret.gpg`,
    );
    await m.sh(`spark keytool install-server-key ${SHARE}/lighthouse.key`);
    // Test only: the host runner is the debspawn the helper runs (docs/testing.md, the deployment test).
    await m.sh(`install -m 0755 ${SHARE}/debspawn /usr/local/bin/debspawn`);
    await m.sh(`install -D -m 0644 ${SHARE}/hostile-builder.mjs ${HOSTILE_BUNDLE}`);
    if (from === 'package') {
      const again = await setUpAgain();
      if (again.code !== 0) throw new Error(`${way.again}: exit ${again.code}\n${again.stdout.slice(-3000)}`);
      await m.sh('systemctl enable --now spark.target');
    } else {
      // A worker as the earlier install.sh ran it, then today's install.sh on the same checkout.
      await earlierInstall('--enable');
      await waitFor("the earlier installation's services run", async () => !(await servicePids()).split(' ').includes('0'), {
        timeoutMs: 30_000,
        intervalMs: POLL_MS,
      });
      beforeMove = { passwords: await m.sh('sha256sum /etc/laniakea/redis/*.password'), pids: await servicePids() };
      // Without --enable: what was enabled and running before must be so after.
      await inCheckout('bash deploy/install.sh');
    }
    // Lighthouse trusts the worker's public key (lk-keytool install-trusted-key on the master).
    await writeFile(join(trusted, `${MACHINE}.key`), await readFile(join(share, 'keys', `${MACHINE}.key`)));
  });
  if (!installed) return 1;

  if (from === 'checkout') {
    await check(
      'install.sh builds the package from the checkout and moves the earlier installation onto it: its files set aside, spark.target still enabled, Redis passwords kept, services restarted from /usr/sbin',
      async () => {
        const version = (await m.sh("dpkg-query -W -f '${Version}' spark-ts")).trim();
        const commit = (await run('git', ['-C', checkout, 'rev-parse', 'HEAD'])).stdout.trim().slice(0, 12);
        if (!new RegExp(`^0\\.1\\.0-1\\+git\\d{8}\\.\\d{6}\\.${commit}$`).test(version))
          throw new Error(`spark-ts ${version} installed, not a snapshot of ${commit}`);
        const left = (await m.sh(`for f in ${EARLIER_FILES.join(' ')}; do [ ! -e "$f" ] || echo "$f"; done`)).trim();
        if (left) throw new Error(`still there: ${left}`);
        const backups = (await m.sh('ls /var/backups/spark-ts-install.sh')).trim().split('\n');
        const backup = `/var/backups/spark-ts-install.sh/${backups[0]}`;
        const setAside = (await m.sh(`for f in ${EARLIER_FILES.join(' ')}; do [ -f "${backup}$f" ] || echo "$f"; done`)).trim();
        if (backups.length !== 1 || setAside) throw new Error(`${backup}: ${backups.join(' ')}; missing: ${setAside}`);
        const fragment = (await m.sh('readlink -f "$(systemctl show -p FragmentPath --value spark-signer.service)"')).trim();
        const execStart = await m.sh('systemctl show -p ExecStart --value spark-signer.service');
        if (fragment !== '/usr/lib/systemd/system/spark-signer.service' || !execStart.includes('path=/usr/sbin/spark-signer'))
          throw new Error(`spark-signer.service: ${fragment}, ${execStart}`);
        if ((await m.sh('command -v spark')).trim() !== '/usr/bin/spark') throw new Error('spark is not /usr/bin/spark');
        const wants = (await m.sh('readlink /etc/systemd/system/multi-user.target.wants/spark.target')).trim();
        const enabled = (await m.exec(['systemctl', 'is-enabled', 'spark.target'])).stdout.trim();
        if (wants !== '/usr/lib/systemd/system/spark.target' || enabled !== 'enabled')
          throw new Error(`spark.target: ${enabled}, multi-user.target.wants/spark.target → ${wants}`);
        if ((await m.sh('sha256sum /etc/laniakea/redis/*.password')) !== beforeMove.passwords)
          throw new Error('the Redis passwords changed');
        const pids = await servicePids();
        for (const [before, after] of pids.split(' ').map((pid, i) => [beforeMove.pids.split(' ')[i], pid]))
          if (after === '0' || after === before) throw new Error(`services' PIDs ${beforeMove.pids} → ${pids}`);
        // Again on the same commit: the package is built, found installed, and nothing changes.
        const again = await inCheckout('bash deploy/install.sh');
        if (!again.includes(`spark-ts ${version} (this commit) is installed already: nothing to install`))
          throw new Error(`install.sh again:\n${again.slice(-1500)}`);
        if ((await servicePids()) !== pids) throw new Error('install.sh again restarted a service');
        // An older commit than what is installed (here: dpkg is told a later version is): refused, nothing changed.
        const status = '/var/lib/dpkg/status';
        await m.sh(`sed -i 's/^Version: ${version.replaceAll('.', '\\.')}$/Version: 0.1.0-2/' ${status}`);
        try {
          const older = await runInCheckout('bash deploy/install.sh');
          if (older.code === 0 || !older.stdout.includes(`spark-ts 0.1.0-2 is installed, newer than this commit's ${version}`))
            throw new Error(`install.sh with a later version installed: exit ${older.code}\n${older.stdout.slice(-1500)}`);
        } finally {
          await m.sh(`sed -i 's/^Version: 0.1.0-2$/Version: ${version}/' ${status}`);
        }
        if ((await servicePids()) !== pids) throw new Error('install.sh with a later version installed restarted a service');
        return `spark-ts ${version}; ${EARLIER_FILES.length} files checked in ${backup}; again: nothing to install; below a later version: refused`;
      },
    );
  }

  const mainPid = async (unit: string) => Number((await m.sh(`systemctl show -p MainPID --value ${unit}`)).trim());
  // `command` as spark-builder with the builder unit's own settings (a transient unit), in the checkout.
  const inBuilderUnit = async (command: string[], timeoutMs?: number) =>
    m.exec(
      [
        'systemd-run',
        '--wait',
        '--pipe',
        '--quiet',
        '-p',
        'User=spark-builder',
        '-p',
        'Group=lkspark',
        '-p',
        'WorkingDirectory=/',
        ...(await unitProperties(m, 'spark-builder@1')),
        ...command,
      ],
      timeoutMs === undefined ? {} : { timeoutMs },
    );
  const units = ['spark-connector', 'spark-builder@1', 'spark-signer', 'spark-uploader'];
  await check('the manual pages and the bash completion of spark are installed', async () => {
    const pages = ['man1/spark.1', ...['connector', 'builder', 'signer', 'uploader'].map((service) => `man8/spark-${service}.8`)];
    for (const page of pages) {
      // The package's pages are compressed, as Debian's policy wants them.
      const head = await m.sh(`{ zcat -f ${way.manDir}/${page}.gz 2>/dev/null || cat ${way.manDir}/${page}; } | head -c 4096`);
      if (!head.includes('.SH SYNOPSIS')) throw new Error(`${way.manDir}/${page}: ${head.slice(0, 200)}`);
    }
    const completion = await m.sh(
      `bash -c 'source ${way.completion}; COMP_WORDS=(spark keytool ins); COMP_CWORD=2; _spark; echo "\${COMPREPLY[*]}"'`,
    );
    if (completion.trim() !== 'install-worker-key install-server-key install-trusted-key install-signer-key') {
      throw new Error(`completion of "spark keytool ins": ${JSON.stringify(completion)}`);
    }
    return `${pages.length} pages; spark keytool ins<TAB> → ${completion.trim()}`;
  });

  await check('spark.target starts all four services, each as its own user', async () => {
    await waitFor('the four services active', async () => (await m.exec(['systemctl', 'is-active', ...units])).code === 0, {
      timeoutMs: 30_000,
      intervalMs: POLL_MS,
    });
    // A unit is "active" from its fork on; its user is set up just before exec.
    const expected = ['spark-connector', 'spark-builder', 'spark-signer', 'spark-uploader'];
    let users: string[] = [];
    await waitFor(
      'each service running as its user',
      async () => {
        users = [];
        for (const unit of units) users.push((await m.exec(['ps', '-o', 'user=', '-p', String(await mainPid(unit))])).stdout.trim());
        return users.join() === expected.join();
      },
      { timeoutMs: 20_000, intervalMs: POLL_MS },
    ).catch((error: Error) => {
      throw new Error(`${error.message}: users ${users.join()}`);
    });
    return users.join(', ');
  });

  // --- Redis as setup-host sets it up: one ACL user per service, the default user off.
  const redisCli = (user: string, command: string) =>
    m.sh(
      `REDISCLI_AUTH=$(cat /etc/laniakea/redis/${user}.password) redis-cli --no-auth-warning --user ${user} -s ${REDIS_SOCKET} ${command}`,
    );
  await check('Redis refuses the default user; each service is logged in as its own ACL user', async () => {
    const anonymous = await m.exec(['redis-cli', '-s', REDIS_SOCKET, 'GET', archiveTargetsKey(DEFAULT_QUEUE_PREFIX)]);
    if (!/NOAUTH Authentication required/.test(anonymous.stdout + anonymous.stderr))
      throw new Error(`redis-cli without a password: exit ${anonymous.code} ${anonymous.stdout}${anonymous.stderr}`);
    const defaultLogin = await m.exec(['redis-cli', '-s', REDIS_SOCKET, '--no-auth-warning', '--user', 'default', '--pass', 'x', 'PING']);
    if (!/WRONGPASS|disabled/.test(defaultLogin.stdout + defaultLogin.stderr))
      throw new Error(`AUTH default: exit ${defaultLogin.code} ${defaultLogin.stdout}${defaultLogin.stderr}`);
    const toml = await m.sh('cat /etc/laniakea/spark.toml');
    if (!/^RedisCredentialsDir = '\/etc\/laniakea\/redis'$/m.test(toml))
      throw new Error(`${way.writer} did not add RedisCredentialsDir to spark.toml`);
    if (!toml.includes(`\nRedisUrl = '${REDIS_SOCKET}'\n`))
      throw new Error(`${way.writer} did not add RedisUrl = '${REDIS_SOCKET}' to spark.toml`);
    const modes = (await m.sh('stat -c "%n %U:%G %a" /etc/laniakea/redis/*.password')).trim().split('\n');
    const expected = [
      '/etc/laniakea/redis/spark-admin.password root:root 400',
      '/etc/laniakea/redis/spark-builder.password spark-builder:lkspark 400',
      '/etc/laniakea/redis/spark-connector.password spark-connector:lkspark 400',
      '/etc/laniakea/redis/spark-dashboard.password root:root 400',
      '/etc/laniakea/redis/spark-operator.password root:spark-operators 440',
      '/etc/laniakea/redis/spark-signer.password spark-signer:lkspark 400',
      '/etc/laniakea/redis/spark-uploader.password spark-uploader:lkspark 400',
    ];
    if (modes.join('\n') !== expected.join('\n')) throw new Error(`password files:\n${modes.join('\n')}`);
    // setup-host's memory limit: the default RedisMaxMemory (spark.toml here sets none), never evicting.
    const memory = await redisCli('spark-operator', 'INFO memory');
    if (!/^maxmemory:1073741824\r?$/m.test(memory) || !/^maxmemory_policy:noeviction\r?$/m.test(memory))
      throw new Error(
        `Redis memory settings: ${memory
          .split('\n')
          .filter((line) => line.startsWith('maxmemory'))
          .join(' ')}`,
      );
    let users: string[] = [];
    await waitFor(
      'all four services connected with their users, and no client as the default user',
      async () => {
        const clients = await redisCli('spark-operator', 'CLIENT LIST');
        users = [...new Set([...clients.matchAll(/ user=(\S+)/g)].map((match) => match[1] ?? ''))].sort();
        // A connection shows user=default from its connect to its AUTH, a few ms; one that stays so is a client without a login.
        const all = ['spark-builder', 'spark-connector', 'spark-signer', 'spark-uploader'].every((u) => users.includes(u));
        return all && !users.includes('default');
      },
      { timeoutMs: 30_000, intervalMs: POLL_MS },
    ).catch((error: Error) => {
      throw new Error(`${error.message}: connected users ${users.join(', ')} (default: a client that never logged in)`);
    });
    return `unauthenticated GET: NOAUTH; connected users ${users.join(', ')}; password files ${modes.length}, 0400 (operator 0440 root:spark-operators)`;
  });

  await check("the services use the worker's own Redis, redis-server@spark; the host's own Redis is as it was", async () => {
    const server = await redisCli('spark-operator', 'INFO server');
    if (!/^config_file:\/etc\/redis\/redis-spark\.conf\r?$/m.test(server)) throw new Error(`the services' Redis: ${server}`);
    const enabled = await m.exec(['systemctl', 'is-enabled', 'redis-server@spark']);
    if (enabled.stdout.trim() !== 'enabled') throw new Error(`redis-server@spark is ${enabled.stdout.trim()}`);
    const persistence = await redisCli('spark-operator', 'INFO persistence');
    if (!/^aof_enabled:1\r?$/m.test(persistence)) throw new Error("the worker's Redis keeps no append-only file");
    const after = await hostRedis();
    if (after.conf !== hostRedisBefore.conf) throw new Error(`${way.writer} changed /etc/redis/redis.conf`);
    if (after.pid !== hostRedisBefore.pid)
      throw new Error(`${way.writer} restarted redis-server (pid ${hostRedisBefore.pid} → ${after.pid})`);
    const key = (await hostRedisCli('GET other-application-key')).trim();
    const policy = (await hostRedisCli('CONFIG GET maxmemory-policy')).split('\n')[1]?.trim();
    if (key !== 'still-here' || policy !== 'allkeys-lru')
      throw new Error(`the host's Redis without a password: key ${key}, maxmemory-policy ${policy}`);
    return `${REDIS_SOCKET} (config /etc/redis/redis-spark.conf, append-only); the host's redis-server on ${hostRedisPort}: same redis.conf and pid, its key, allkeys-lru, no password`;
  });

  await check(
    `WorkspaceRoot ${WORKSPACE_ROOT}: the signer and uploader may write its workspaces (setup-host's drop-ins); the audit log is under /var/log`,
    async () => {
      const paths: string[] = [];
      for (const unit of ['spark-signer', 'spark-uploader']) {
        const allowed = (await m.sh(`systemctl show -p ReadWritePaths --value ${unit}`)).trim();
        if (allowed !== WORKSPACES) throw new Error(`${unit} ReadWritePaths=${allowed}, expected ${WORKSPACES}`);
        paths.push(`${unit}: ${allowed}`);
      }
      const audit = (await m.sh(`stat -c '%U %a' ${AUDIT_LOG} $(dirname ${AUDIT_LOG})`)).trim().split('\n');
      if (audit.join(', ') !== 'spark-signer 600, spark-signer 700') throw new Error(`${AUDIT_LOG} and its directory: ${audit.join(', ')}`);
      const logsDirectory = (await m.sh('systemctl show -p LogsDirectory --value spark-signer')).trim();
      if (logsDirectory !== 'spark-signer') throw new Error(`spark-signer LogsDirectory=${logsDirectory}`);
      return `${paths.join('; ')}; ${AUDIT_LOG} spark-signer 0600 in a 0700 directory`;
    },
  );

  await check(
    `${way.again} run again changes nothing: same passwords and generated files, neither Redis nor a service restarted`,
    async () => {
      const generatedFiles = [
        '/etc/redis/redis-spark.conf',
        '/etc/systemd/system/spark-signer.service.d/workspace.conf',
        '/etc/systemd/system/spark-uploader.service.d/workspace.conf',
        '/etc/logrotate.d/spark',
        '/etc/tmpfiles.d/spark.conf',
      ];
      const state = async () =>
        [
          ...(await Promise.all(['redis-server@spark', 'redis-server', ...units].map(mainPid))),
          (await m.sh(`cat /etc/laniakea/redis/*.password /etc/redis/spark-users.acl ${generatedFiles.join(' ')} | sha256sum`)).trim(),
        ].join(' ');
      const before = await state();
      const { code, stdout: output } = await setUpAgain();
      if (code !== 0) throw new Error(`${way.again}: exit ${code}\n${output.slice(-3000)}`);
      const after = await state();
      if (before !== after)
        throw new Error(`pids of the Redis instances and services, and the files' checksum: before ${before}, after ${after}`);
      const written = output.split('\n').filter((line) => / written$|: added /.test(line));
      if (written.length > 0) throw new Error(`${way.again} wrote again:\n${written.join('\n')}`);
      const toml = await m.sh('cat /etc/laniakea/spark.toml');
      if ((toml.match(/RedisCredentialsDir/g) ?? []).length !== 1) throw new Error('RedisCredentialsDir is in spark.toml more than once');
    },
  );

  await check('the builder unit has no no_new_privs, and sudo runs the helper in its settings', async () => {
    const builder = await mainPid('spark-builder@1');
    const status = await m.sh(`grep NoNewPrivs /proc/${builder}/status`);
    if (!/NoNewPrivs:\s*0/.test(status)) throw new Error(`spark-builder@1 runs with ${status.trim()}`);
    // Inside the unit's own context (same unit settings), as the builder does it; what the helper and
    // sudo refuse is the hostile builder's probe, below.
    // stdin from /dev/null: the helper stops what it runs when a piped stdin closes.
    const inUnit = await inBuilderUnit(['/bin/sh', '-c', `exec sudo -n ${way.helper} --version </dev/null`]);
    if (inUnit.code !== 0) throw new Error(`sudo helper --version in the unit's settings: exit ${inUnit.code} ${inUnit.stderr}`);
    return `helper --version: ${inUnit.stdout.trim()}`;
  });

  await check('spark-builder@2 serves its metrics on MetricsPort + 1, beside @1 and the other services', async () => {
    await m.sh('systemctl start spark-builder@2');
    try {
      const ports = {
        'spark-builder@1': builderPort,
        'spark-builder@2': builderPort + 1,
        connector: connectorPort,
        signer: signerPort,
        uploader: uploaderPort,
      };
      const seen: string[] = [];
      for (const [name, port] of Object.entries(ports)) {
        const text = await waitFor(
          `${name} metrics on ${port}`,
          () =>
            fetch(`http://127.0.0.1:${port}/metrics`).then(
              (r) => (r.ok ? r.text() : null),
              () => null,
            ),
          { timeoutMs: 20_000, intervalMs: POLL_MS },
        );
        if (!text.includes('spark_process_')) throw new Error(`${name} on ${port} answered without process metrics`);
        seen.push(`${name} ${port}`);
      }
      return seen.join(', ');
    } finally {
      await m.sh('systemctl stop spark-builder@2');
    }
  });

  // --- Jobs through the chain.
  const success = await archive.packageJob({ name: 'hello-deploy', version: '1.0' });
  const ftbfs = await archive.packageJob({ name: 'broken-deploy', version: '1.0', cSource: 'int main(void) { return missing; }\n' });
  const refused = await archive.packageJob({ name: 'refused-deploy', version: '1.0' });
  (refused.data as Record<string, unknown>)['sha256sum'] = '0'.repeat(64);
  for (const job of [success, ftbfs, refused]) standIn.addJob(job);
  const ended = (uuid: string) => {
    const seen = requestsFor(standIn.requests, uuid);
    return seen.includes('job-success') || seen.includes('job-failed');
  };
  // A rejected job goes back to WAITING and would be handed out again at once; take it off the board.
  void waitFor(
    'the refused job rejected',
    () => {
      if (!requestsFor(standIn.requests, refused.uuid).includes('job-rejected')) return false;
      // Deleted, not marked DONE: a rejection still on its way (handed straight back within its
      // cool-down) would put a DONE job back to WAITING, as at Lighthouse.
      board.remove(refused.uuid);
      return true;
    },
    { timeoutMs: 300_000, intervalMs: POLL_MS },
  ).catch(() => undefined);

  const verified = async (uuid: string) => {
    const names = await readdir(uploads).catch(() => [] as string[]);
    const signed: string[] = [];
    for (const name of names.filter((n) => n.endsWith('.dud') || n.endsWith('.changes'))) {
      const text = await readFile(join(uploads, name), 'utf8');
      if (name.endsWith('.dud') && !text.includes(`X-Spark-Job: ${uuid}`)) continue;
      if (name.endsWith('.changes') && !names.some((d) => d.endsWith('.dud') && name.startsWith(d.split('_')[0] ?? ''))) continue;
      await run('gpgv', ['--keyring', key.keyring, join(uploads, name)]);
      signed.push(name);
    }
    return signed;
  };
  const dudFor = async (uuid: string) => {
    for (const name of (await readdir(uploads).catch(() => [] as string[])).filter((n) => n.endsWith('.dud'))) {
      const text = await readFile(join(uploads, name), 'utf8');
      if (text.includes(`X-Spark-Job: ${uuid}`)) return { name, text };
    }
    return null;
  };

  await check('a package build succeeds: reported at Lighthouse, signed .changes and .dud in the archive', async () => {
    await waitFor('job-success', () => ended(success.uuid), { timeoutMs: 180_000, intervalMs: POLL_MS });
    const seen = requestsFor(standIn.requests, success.uuid);
    if (!seen.includes('job-success')) throw new Error(`Lighthouse saw ${seen.join(', ')}`);
    const dud = await waitFor('the .dud in the archive', () => dudFor(success.uuid), { timeoutMs: 60_000, intervalMs: POLL_MS });
    if (!/X-Spark-Result: success/.test(dud.text)) throw new Error(`${dud.name} does not say success`);
    const changes = (await readdir(uploads)).find((n) => n.startsWith('hello-deploy_1.0_') && n.endsWith('.changes'));
    if (!changes) throw new Error('no hello-deploy .changes in the archive');
    await run('gpgv', ['--keyring', key.keyring, join(uploads, changes)]);
    await run('gpgv', ['--keyring', key.keyring, join(uploads, dud.name)]);
    const log = await m.sh(`cat ${WORKSPACE_ROOT}/logs/${success.uuid}*.log`);
    if (!log.includes(`sudo -n ${way.helper} build`)) throw new Error('the build log shows no build through sudo and the helper');
    return `${changes}, ${dud.name} verified with gpgv; built through sudo and the helper`;
  });

  await check('a build failure is reported failed, with only its signed .dud uploaded', async () => {
    await waitFor('job-failed', () => ended(ftbfs.uuid), { timeoutMs: 180_000, intervalMs: POLL_MS });
    const seen = requestsFor(standIn.requests, ftbfs.uuid);
    if (!seen.includes('job-failed')) throw new Error(`Lighthouse saw ${seen.join(', ')}`);
    const dud = await waitFor('the .dud in the archive', () => dudFor(ftbfs.uuid), { timeoutMs: 60_000, intervalMs: POLL_MS });
    if (!/X-Spark-Result: failure/.test(dud.text)) throw new Error(`${dud.name} does not say failure`);
    await run('gpgv', ['--keyring', key.keyring, join(uploads, dud.name)]);
    const changes = (await readdir(uploads)).filter((n) => n.startsWith('broken-deploy_') && n.endsWith('.changes'));
    if (changes.length > 0) throw new Error(`a failed build uploaded ${changes.join()}`);
    return `${dud.name} verified`;
  });

  await check('a job whose source does not match its hash is rejected back, nothing uploaded', async () => {
    await waitFor('job-rejected', () => requestsFor(standIn.requests, refused.uuid).includes('job-rejected'), {
      timeoutMs: 120_000,
      intervalMs: POLL_MS,
    });
    const seen = requestsFor(standIn.requests, refused.uuid);
    if (seen.includes('job-success') || seen.includes('job-failed')) throw new Error(`Lighthouse saw ${seen.join(', ')}`);
    if (await dudFor(refused.uuid)) throw new Error('a rejected job uploaded a .dud');
    const files = (await readdir(uploads)).filter((n) => n.startsWith('refused-deploy'));
    if (files.length > 0) throw new Error(`uploaded ${files.join()}`);
  });

  const leftovers = async () =>
    (await m.exec(['pgrep', '-a', '-f', 'spark-build-helper|host-runner|dpkg-buildpackage|sleep [0-9]'])).stdout.trim();
  const buildRunning = (seconds: number) => async () => (await m.exec(['pgrep', '-f', `^sleep ${seconds}$`])).code === 0;

  await check('systemctl stop spark-builder@1 mid-build drains: the job is rejected back, nothing is left running', async () => {
    const slow = await archive.packageJob({ name: 'slow-deploy', version: '1.0', buildCommands: ['sleep 20'] });
    standIn.addJob(slow);
    await waitFor('the slow build running', buildRunning(20), { timeoutMs: 120_000, intervalMs: POLL_MS });
    const t0 = Date.now();
    await m.sh('systemctl stop spark-builder@1', { timeoutMs: 120_000 });
    const stopSeconds = ((Date.now() - t0) / 1000).toFixed(1);
    const left = await leftovers();
    if (left) throw new Error(`still running after the stop:\n${left}`);
    const seen = requestsFor(standIn.requests, slow.uuid);
    if (!seen.includes('job-rejected') && !seen.includes('job-success')) throw new Error(`Lighthouse saw ${seen.join(', ')}`);
    await m.sh('systemctl start spark-builder@1');
    await waitFor('the slow job done after the builder is back', () => ended(slow.uuid), { timeoutMs: 180_000, intervalMs: POLL_MS });
    const after = requestsFor(standIn.requests, slow.uuid);
    if (!after.includes('job-success')) throw new Error(`Lighthouse saw ${after.join(', ')}`);
    return `stopped in ${stopSeconds} s (DrainTimeout 5 s); ${seen.includes('job-rejected') ? 'rejected back' : 'finished'}, then built again: ${after.join(' → ')}`;
  });

  await check('kill -9 of each service mid-job: systemd restarts it, the job still succeeds once', async () => {
    const job = await archive.packageJob({ name: 'killed-deploy', version: '1.0', buildCommands: ['sleep 8'] });
    standIn.addJob(job);
    await waitFor('the build running', buildRunning(8), { timeoutMs: 120_000, intervalMs: POLL_MS });
    const restarted: string[] = [];
    // The builder first, while its build runs: the helper must end the build when its caller is gone.
    for (const unit of ['spark-builder@1', 'spark-connector', 'spark-signer', 'spark-uploader']) {
      const before = await mainPid(unit);
      await m.sh(`kill -9 ${before}`);
      await waitFor(
        `${unit} restarted`,
        async () => {
          const now = await mainPid(unit);
          return now !== 0 && now !== before && (await m.exec(['systemctl', 'is-active', unit])).code === 0;
        },
        { timeoutMs: 60_000, intervalMs: POLL_MS },
      );
      restarted.push(unit);
    }
    await waitFor('the job done', () => ended(job.uuid), { timeoutMs: 300_000, intervalMs: POLL_MS });
    const seen = requestsFor(standIn.requests, job.uuid);
    if (seen.filter((r) => r === 'job-success').length !== 1) throw new Error(`Lighthouse saw ${seen.join(', ')}`);
    const signed = await verified(job.uuid);
    if (!signed.some((n) => n.endsWith('.dud'))) throw new Error('no verified .dud for the job');
    const left = await leftovers();
    if (left) throw new Error(`still running:\n${left}`);
    return `restarted ${restarted.join(', ')}; ${seen.join(' → ')}`;
  });

  await check('systemctl restart spark-signer mid-job: the job is signed and uploaded once', async () => {
    const job = await archive.packageJob({ name: 'resigned-deploy', version: '1.0', buildCommands: ['sleep 3'] });
    standIn.addJob(job);
    await waitFor('the build running', buildRunning(3), { timeoutMs: 120_000, intervalMs: POLL_MS });
    await m.sh('systemctl restart spark-signer');
    await waitFor('the job done', () => ended(job.uuid), { timeoutMs: 180_000, intervalMs: POLL_MS });
    const seen = requestsFor(standIn.requests, job.uuid);
    if (seen.filter((r) => r === 'job-success').length !== 1) throw new Error(`Lighthouse saw ${seen.join(', ')}`);
    const dud = await waitFor('the .dud', () => dudFor(job.uuid), { timeoutMs: 60_000, intervalMs: POLL_MS });
    await run('gpgv', ['--keyring', key.keyring, join(uploads, dud.name)]);
  });

  // README "The signer's key": from here on the key is an encrypted systemd credential, the clear file gone.
  const keyInCredential = await check(
    'the key as an encrypted systemd credential: the clear file shredded, the signer restarted, a job signed, no clear copy on disk',
    () =>
      keyToCredential(m, {
        armoredKey: key.secretKeyFile,
        fingerprint: key.fingerprint,
        config: '/etc/laniakea/spark.toml',
        keyFile: `/etc/laniakea/keys/${MACHINE}_secret.gpg`,
        shareName: basename(SHARE),
        signJob: async () => {
          const job = await archive.packageJob({ name: 'credential-deploy', version: '1.0' });
          standIn.addJob(job);
          await waitFor('the job done', () => ended(job.uuid), { timeoutMs: 180_000, intervalMs: POLL_MS });
          const seen = requestsFor(standIn.requests, job.uuid);
          if (!seen.includes('job-success')) throw new Error(`Lighthouse saw ${seen.join(', ')}`);
          const dud = await waitFor('the .dud', () => dudFor(job.uuid), { timeoutMs: 60_000, intervalMs: POLL_MS });
          await run('gpgv', ['--keyring', key.keyring, join(uploads, dud.name)]);
          return dud.name;
        },
      }),
  );

  await check('spark status and spark logs work for a member of spark-operators, who reads no workspace', async () => {
    await m.sh('id alice >/dev/null 2>&1 || useradd --create-home --groups spark-operators alice');
    const asAlice = (command: string[]) => m.exec(['runuser', '-u', 'alice', '--', ...command]);
    const status = await asAlice(['spark', 'status', '--config', '/etc/laniakea/spark.toml']);
    // 0 is a healthy worker; 3-5 say what is unhealthy (README, spark status) — all read Redis as the operator.
    if (![0, 3, 4, 5].includes(status.code ?? -1)) throw new Error(`exit ${status.code}\n${status.stdout}${status.stderr}`);
    const logs = await asAlice(['spark', 'logs', '--config', '/etc/laniakea/spark.toml', success.uuid]);
    const logFile = (await m.sh(`ls ${WORKSPACE_ROOT}/logs/${success.uuid}.*.log`)).trim();
    if (logs.code !== 0 || logs.stdout !== (await m.sh(`cat ${logFile}`))) {
      throw new Error(`spark logs ${success.uuid}: exit ${logs.code}, ${logs.stdout.length} bytes, not ${logFile}\n${logs.stderr}`);
    }
    const workspaces = await asAlice(['ls', WORKSPACES]);
    if (workspaces.code === 0) throw new Error(`alice lists ${WORKSPACES}: ${workspaces.stdout}`);
    return `${status.stdout.split('\n').slice(0, 3).join(' | ')}; spark logs: ${logs.stdout.length} bytes, the log as written; ls ${WORKSPACES}: ${workspaces.stderr.trim()}`;
  });

  await check('uploaded workspaces are removed, no job is left in flight or failed in the queues', async () => {
    await waitFor('workspaces removed', async () => (await m.sh(`ls -A ${WORKSPACES}`)).trim() === '', {
      timeoutMs: 60_000,
      intervalMs: POLL_MS,
    }).catch(async (error: Error) => {
      throw new Error(`${error.message}: ${(await m.sh(`ls -la ${WORKSPACES}/*`)).trim()}`);
    });
    const helperState = (await m.sh('ls -A /var/lib/spark-build-helper')).trim();
    if (helperState !== '') throw new Error(`the build helper left ${helperState} in /var/lib/spark-build-helper`);
    let hosts: { jobs: unknown[]; queues: Record<string, { waiting: number; active: number; delayed: number; failed: number }> }[] = [];
    await waitFor(
      'the queues drained',
      async () => {
        hosts = JSON.parse(await m.sh('spark status --json --config /etc/laniakea/spark.toml || [ $? -ne 69 ]')) as typeof hosts;
        const host = hosts[0];
        return (
          host !== undefined &&
          host.jobs.length === 0 &&
          Object.values(host.queues).every((q) => q.waiting + q.active + q.delayed + q.failed === 0)
        );
      },
      { timeoutMs: 30_000, intervalMs: POLL_MS },
    ).catch((error: Error) => {
      throw new Error(`${error.message}: ${JSON.stringify(hosts[0]?.queues)} ${JSON.stringify(hosts[0]?.jobs)}`);
    });
    return `queues ${Object.keys(hosts[0]?.queues ?? {}).join(', ')}: nothing waiting, active, delayed or failed`;
  });

  await check(
    'service logs reach journald as text lines with their severity (journalctl -p warning shows warnings and errors only)',
    async () => {
      const journal = async (args: string) =>
        (await m.sh(`journalctl ${args} -o cat --no-pager | grep -E '^(TRACE|DEBUG|INFO|WARN|ERROR|FATAL) ' || true`))
          .split('\n')
          .filter(Boolean);
      const lines = await journal("-u 'spark-*' -p warning");
      if (lines.length === 0) throw new Error('no warning or error lines from the services (a drain and kill -9 should have left some)');
      const levels = new Set(lines.map((line) => line.split(' ')[0]));
      if ([...levels].some((level) => !['WARN', 'ERROR', 'FATAL'].includes(level ?? '')))
        throw new Error(`journalctl -p warning shows ${[...levels].join(', ')}`);
      const info = (await journal('-u spark-connector -p info')).filter((line) => line.startsWith('INFO ')).length;
      if (info === 0) throw new Error('no info lines from the connector');
      const json = (await m.sh("journalctl -u 'spark-*' -o cat --no-pager | grep -c '^{' || true")).trim();
      if (json !== '0') throw new Error(`${json} JSON lines in the journal`);
      const sample = (await journal('-u spark-uploader -p info')).find((line) => / jobId=/.test(line)) ?? '';
      return `${lines.length} warning/error lines (${[...levels].join(', ')}), ${info} info lines from the connector, e.g. ${sample}`;
    },
  );

  // --- The hostile builder: tools/deploy-test/hostile-builder.ts, run in the machine as
  // spark-builder with the builder unit's settings, its own Redis password and its sudo rule.
  const asBuilder = async (args: string[], timeoutMs: number) => {
    const result = await inBuilderUnit(
      [...way.hostile, ...args, '--helper', way.helper, '--config', '/etc/laniakea/spark.toml'],
      timeoutMs,
    );
    const lines = result.stdout
      .split('\n')
      .filter((line) => line.startsWith('{'))
      .map((line) => JSON.parse(line) as Record<string, unknown>);
    if (result.code !== 0) throw new Error(`hostile-builder.ts ${args.join(' ')}: exit ${result.code}\n${result.stdout}${result.stderr}`);
    return lines;
  };
  const auditEntries = async () =>
    (await m.sh(`cat ${AUDIT_LOG}`))
      .split('\n')
      .filter(Boolean)
      .map((line) => JSON.parse(line) as { event: string; uuid: string; reason?: string; file?: string; textSha256?: string });

  await check('logrotate rotates the audit log: the signer reopens it on reload, without a restart', async () => {
    const signerPid = await mainPid('spark-signer');
    const before = (await auditEntries()).length;
    if (before === 0) throw new Error(`${AUDIT_LOG} is empty after the jobs`);
    await m.sh('logrotate --force /etc/logrotate.d/spark');
    const rotated = (await m.sh(`cat ${AUDIT_LOG}.1`)).split('\n').filter(Boolean).length;
    if (rotated !== before) throw new Error(`${AUDIT_LOG}.1 holds ${rotated} lines, ${AUDIT_LOG} held ${before}`);
    const reopened = async () =>
      Number((await m.sh("journalctl -u spark-signer -o cat --no-pager | grep -c 'SIGHUP: reopened the audit log' || true")).trim()) > 0;
    await waitFor('the signer reopened its audit log', reopened, { timeoutMs: 20_000, intervalMs: POLL_MS });
    const now = (await m.sh(`stat -c '%U %a %s' ${AUDIT_LOG}`)).trim();
    if (now !== 'spark-signer 600 0') throw new Error(`${AUDIT_LOG} after the rotation (owner, mode, size): ${now}`);
    if ((await mainPid('spark-signer')) !== signerPid) throw new Error('the signer was restarted, not reloaded');
    // The hostile builder's refusals below are read from the new file.
    return `${before} lines in ${AUDIT_LOG}.1; a new, empty ${AUDIT_LOG} (spark-signer 0600); signer pid ${signerPid} kept`;
  });

  await check("hostile builder, no job needed: the helper, sudo, files and Redis refuse what is not the builder's", async () => {
    const tries = await asBuilder(['probe', '--audit-log', AUDIT_LOG], 120_000);
    // What each try must show: refused with this exact reason, or (the documented limit) allowed.
    const NOPERM = /^refused: (code \S+: )?NOPERM /;
    const EACCES = /^refused: code EACCES/;
    const expected: Record<string, RegExp> = {
      'helper login': /^refused: code 64: .*debspawn "login" is not allowed/,
      'helper list': /^refused: code 64: .*debspawn "list" is not allowed/,
      'helper build --results-dir=/etc': /^refused: code 64: .*is not inside a job workspace/,
      'helper run --build-dir /etc/laniakea': /^refused: code 64: .*is not inside a job workspace/,
      'helper build through a link in the workspace': /^refused: code 64: .*is a symbolic link; the helper follows none/,
      'sudo debspawn': /^refused: code 1: sudo: a password is required/,
      'sudo sh': /^refused: code 1: sudo: a password is required/,
      'read spark-connector.password': EACCES,
      'read spark-signer.password': EACCES,
      'read spark-uploader.password': EACCES,
      'read spark-operator.password': EACCES,
      'read spark-admin.password': EACCES,
      'read spark-dashboard.password': EACCES,
      'read the OpenPGP key': EACCES,
      ...(keyInCredential ? { "read the signer's decrypted key credential": EACCES } : {}),
      'open the audit log for writing': EACCES,
      'replace the audit log': EACCES,
      'remove the audit log': EACCES,
      'link over the audit log': EACCES,
      ping: /^allowed: PONG$/,
      'SET archive-targets': NOPERM,
      'GET archive-targets': NOPERM,
      'SET a job record': NOPERM,
      'GET a job record': NOPERM,
      'SET lighthouse status': NOPERM,
      'SET upload-progress': NOPERM,
      'SET another prefix': NOPERM,
      'PUBLISH on a channel not its own': NOPERM,
      FLUSHALL: NOPERM,
      'KEYS *': NOPERM,
      'CONFIG GET ACLFILE': NOPERM,
      'ACL LIST': NOPERM,
      'SCRIPT FLUSH': NOPERM,
      'CLIENT KILL USER SPARK-SIGNER': NOPERM,
      'CLIENT LIST': NOPERM,
      'CLIENT TRACKING ON BCAST': NOPERM,
      RANDOMKEY: NOPERM,
      DBSIZE: NOPERM,
      'PUBSUB CHANNELS': NOPERM,
      'PUBSUB NUMSUB': NOPERM,
      'MEMORY STATS': NOPERM,
      'MEMORY USAGE': NOPERM,
      'OBJECT ENCODING': NOPERM,
      SCAN: NOPERM,
      'add to the upload queue': NOPERM,
      'SCAN for job records': NOPERM,
      "add a report to the connector's report queue": NOPERM,
      "remove the connector's waiting reports": NOPERM,
      "add a report to the signer's report queue": NOPERM,
      "remove the signer's waiting reports": NOPERM,
      "add a report to the uploader's report queue": NOPERM,
      "remove the uploader's waiting reports": NOPERM,
      "mark a round as the signer's": NOPERM,
    };
    const seen = new Map(tries.map((t) => [String(t['name']), `${String(t['outcome'])}: ${String(t['detail'])}`]));
    const wrong: string[] = [];
    for (const [name, pattern] of Object.entries(expected)) {
      const got = seen.get(name);
      if (got === undefined || !pattern.test(got)) wrong.push(`${name}: ${got ?? 'not tried'} (expected ${pattern})`);
    }
    if (wrong.length > 0) throw new Error(wrong.join('\n'));
    return `${Object.keys(expected).length - 1} refused as expected`;
  });

  const scenarios = ['package', 'version', 'suite', 'arch', 'dud', 'result', 'symlink', 'hardlink', 'swap'] as const;
  const hostile = new Map<string, Record<string, unknown>>();
  await check('hostile builder, with jobs: its results for the signer go through the build queue as spark-builder', async () => {
    await m.sh('systemctl stop spark-builder@1', { timeoutMs: 120_000 });
    for (const scenario of scenarios) standIn.addJob(await archive.packageJob({ name: `hostile-${scenario}`, version: '1.0' }));
    const lines = await asBuilder(['build', String(scenarios.length)], 300_000);
    for (const line of lines) if (typeof line['scenario'] === 'string' && line['changes']) hostile.set(line['scenario'], line);
    const missing = [...scenarios, 'unheld'].filter((s) => !hostile.has(s));
    if (missing.length > 0) throw new Error(`the stand-in builder got no job for ${missing.join(', ')}: ${JSON.stringify(lines)}`);
    const swap = lines.find((line) => line['scenario'] === 'swap' && typeof line['swaps'] === 'number');
    return `${hostile.size} jobs handed to the signer; the swap scenario swapped the artifacts dir ${String(swap?.['swaps'])} times`;
  });

  // `unheld`: a sign job for a uuid this worker never got; its failed report is relayed, and
  // Lighthouse (the stand-in) answers that it knows no such job.
  const refusals: Record<Exclude<(typeof scenarios)[number], 'swap'> | 'unheld', RegExp> = {
    package: /Source is "coreutils", the job was handed out for "hostile-package"/,
    version: /Version is "1\.0\+evil1", the job was handed out for "1\.0"/,
    suite: /Distribution is "stable-security", the job was handed out for "[a-z-]+"/,
    arch: /Architecture names source; a amd64 job/,
    dud: /X-Spark-Job is "11111111-1111-4111-8111-111111111111", not this job/,
    result: /X-Spark-Result is "accepted-by-lighthouse", not one of success, failure, depwait/,
    symlink: /is a symbolic link; only regular files in the workspace are signed/,
    hardlink: /has 2 hard links; only files that exist once, in the workspace, are signed/,
    unheld: /no job record for 22222222-2222-4222-8222-222222222222: this worker's connector did not hand it out/,
  };
  for (const [scenario, reason] of Object.entries(refusals)) {
    await check(`hostile builder: ${scenario} — refused, audit line written, reported failed, nothing signed or uploaded`, async () => {
      const line = hostile.get(scenario);
      if (!line) throw new Error('the scenario never ran');
      const uuid = String(line['uuid']);
      await waitFor('the job ended at Lighthouse', () => ended(uuid), { timeoutMs: 60_000, intervalMs: POLL_MS });
      const seen = requestsFor(standIn.requests, uuid);
      if (!seen.includes('job-failed') || seen.includes('job-success')) throw new Error(`Lighthouse saw ${seen.join(', ')}`);
      const entries = (await auditEntries()).filter((e) => e.uuid === uuid);
      const refusal = entries.find((e) => e.event === 'refused');
      if (!refusal || !reason.test(refusal.reason ?? '')) throw new Error(`audit lines of the job: ${JSON.stringify(entries)}`);
      if (entries.some((e) => e.event === 'signed')) throw new Error(`the signer signed: ${JSON.stringify(entries)}`);
      const uploaded = (await readdir(uploads)).filter((n) => n.startsWith(`hostile-${scenario}_`));
      if (uploaded.length > 0 || (await dudFor(uuid))) throw new Error(`uploaded ${uploaded.join(', ')}`);
      const signedHere = (await m.exec(['grep', '-rl', 'BEGIN PGP SIGNED MESSAGE', `${WORKSPACES}/${uuid}.${String(line['round'])}`]))
        .stdout;
      if (signedHere.trim()) throw new Error(`signed files in the workspace: ${signedHere}`);
      if (scenario === 'hardlink' && !/EPERM|EACCES/.test(String(line['linkKey']))) {
        throw new Error(`a hard link to the OpenPGP key: ${String(line['linkKey'])}`);
      }
      return `${refusal.reason ?? ''}${scenario === 'hardlink' ? `; hard link to the key: ${String(line['linkKey'])}` : ''}`;
    });
  }

  await check(
    'hostile builder: the artifacts dir swapped for a link during signing — never the other .changes signed or uploaded',
    async () => {
      const line = hostile.get('swap');
      if (!line) throw new Error('the scenario never ran');
      const uuid = String(line['uuid']);
      await waitFor('the job ended at Lighthouse', () => ended(uuid), { timeoutMs: 120_000, intervalMs: POLL_MS });
      const seen = requestsFor(standIn.requests, uuid);
      const entries = (await auditEntries()).filter((e) => e.uuid === uuid);
      if (entries.some((e) => e.event === 'signed' && e.textSha256 === line['tamperedSha256'])) {
        throw new Error(`the tampered .changes was signed: ${JSON.stringify(entries)}`);
      }
      const changes = (await readdir(uploads)).filter((n) => n.startsWith('hostile-swap_') && n.endsWith('.changes'));
      for (const name of changes) {
        const text = await readFile(join(uploads, name), 'utf8');
        if (!/^Source: hostile-swap$/m.test(text)) throw new Error(`uploaded ${name} for another source:\n${text}`);
      }
      const refusal = entries.find((e) => e.event === 'refused');
      if (seen.includes('job-failed') && !refusal) throw new Error(`reported failed without an audit line: ${JSON.stringify(entries)}`);
      if (seen.includes('job-success') && changes.length === 0) throw new Error('reported success with nothing uploaded');
      return refusal ? `refused: ${refusal.reason ?? ''}` : `signed the bytes it checked (${changes.join(', ')}), the honest .changes`;
    },
  );

  await check("hostile builder: the relay drops every report it queued that is not the builder's to send", async () => {
    // Queued in its own report queue once the signer had taken each round (hostile-builder.ts, build):
    // a success and a rejection of each round, an accepted for a job never handed out here.
    const forged = 2 * hostile.size + 1;
    const dropped = async () =>
      (await m.sh('journalctl -u spark-connector -o cat --no-pager | grep -F "from the builder\'s report queue" || true'))
        .split('\n')
        .filter(Boolean)
        // The message: the line without its level and its fields (from jobId= on).
        .map((line) => line.replace(/^[A-Z]+ /, '').replace(/ jobId=.*$/, ''));
    const lines = await waitFor(`${forged} reports dropped`, async () => ((await dropped()).length >= forged ? dropped() : null), {
      timeoutMs: 60_000,
      intervalMs: POLL_MS,
    });
    const why = new Map<string, number>();
    for (const line of lines) why.set(line, (why.get(line) ?? 0) + 1);
    for (const line of hostile.values()) {
      const seen = requestsFor(standIn.requests, String(line['uuid']));
      if (seen.includes('job-rejected') || (seen.includes('job-success') && line['scenario'] !== 'swap')) {
        throw new Error(`Lighthouse heard ${seen.join(', ')} about ${String(line['scenario'])}`);
      }
    }
    const never = requestsFor(standIn.requests, '33333333-3333-4333-8333-333333333333');
    if (never.length > 0) throw new Error(`Lighthouse heard ${never.join(', ')} about a job never handed out`);
    return [...why].map(([msg, count]) => `${count}× ${msg}`).join('; ');
  });

  await check('after the hostile builder, an honest job still goes through: built, signed, uploaded, verified', async () => {
    await m.sh('systemctl start spark-builder@1');
    const honest = await archive.packageJob({ name: 'honest-after', version: '1.0' });
    standIn.addJob(honest);
    await waitFor('job-success', () => ended(honest.uuid), { timeoutMs: 180_000, intervalMs: POLL_MS });
    const seen = requestsFor(standIn.requests, honest.uuid);
    if (!seen.includes('job-success')) throw new Error(`Lighthouse saw ${seen.join(', ')}`);
    const dud = await waitFor('the .dud in the archive', () => dudFor(honest.uuid), { timeoutMs: 60_000, intervalMs: POLL_MS });
    const changes = (await readdir(uploads)).find((n) => n.startsWith('honest-after_1.0_') && n.endsWith('.changes'));
    if (!changes) throw new Error('no honest-after .changes in the archive');
    await run('gpgv', ['--keyring', key.keyring, join(uploads, changes)]);
    await run('gpgv', ['--keyring', key.keyring, join(uploads, dud.name)]);
    const signed = (await auditEntries()).filter((entry) => entry.uuid === honest.uuid && entry.event === 'signed');
    if (signed.length === 0) throw new Error(`no signature of the job in ${AUDIT_LOG} (the file the signer reopened after the rotation)`);
    return `${changes}, ${dud.name} verified with gpgv; ${signed.length} signatures in the rotated-to ${AUDIT_LOG}`;
  });

  await check('systemd-tmpfiles expires old build logs and leftover workspaces; recent ones stay', async () => {
    const old = '00000000-0000-4000-8000-0000000000aa';
    const recent = '00000000-0000-4000-8000-0000000000bb';
    const logs = `${WORKSPACE_ROOT}/logs`;
    await m.sh(
      [
        `touch -d '40 days ago' ${logs}/${old}.1.log`,
        `touch ${logs}/${recent}.1.log`,
        `mkdir -p ${WORKSPACES}/${old}.1/artifacts ${WORKSPACES}/${recent}.1/artifacts`,
        `echo left > ${WORKSPACES}/${old}.1/artifacts/left_1.0_amd64.deb`,
        `echo kept > ${WORKSPACES}/${recent}.1/artifacts/kept_1.0_amd64.deb`,
        // Files first, then their directories: writing into a directory makes it new again.
        `touch -d '100 days ago' ${WORKSPACES}/${old}.1/artifacts/left_1.0_amd64.deb ${WORKSPACES}/${old}.1/artifacts ${WORKSPACES}/${old}.1`,
      ].join(' && '),
    );
    try {
      // What systemd-tmpfiles-clean.timer runs daily, for spark's file alone.
      await m.sh('systemd-tmpfiles --clean /etc/tmpfiles.d/spark.conf');
      const left = (await m.sh(`ls -A ${logs} ${WORKSPACES}`)).split('\n');
      const problems = [
        ...(left.includes(`${old}.1.log`) ? ['the 40-day-old build log is still there'] : []),
        ...(left.includes(`${old}.1`) ? ['the 100-day-old workspace is still there'] : []),
        ...(left.includes(`${recent}.1.log`) ? [] : ['the recent build log is gone']),
        ...(left.includes(`${recent}.1`) ? [] : ['the recent workspace is gone']),
      ];
      if (problems.length > 0) throw new Error(`${problems.join('; ')}:\n${left.join('\n')}`);
      const timer = (await m.exec(['systemctl', 'is-active', 'systemd-tmpfiles-clean.timer'])).stdout.trim();
      if (timer !== 'active') throw new Error(`systemd-tmpfiles-clean.timer is ${timer}`);
      return (await m.sh('grep -v "^#" /etc/tmpfiles.d/spark.conf')).trim().replaceAll('\n', '; ');
    } finally {
      await m.sh(`rm -rf ${logs}/${old}.1.log ${logs}/${recent}.1.log ${WORKSPACES}/${old}.1 ${WORKSPACES}/${recent}.1`);
    }
  });

  await check(
    "spark verify checks the units' write access, the audit log's directory and Redis, and flags laniakea-spark's sudo rule",
    async () => {
      type Report = { checks: { check: string; status: string; message: string }[] };
      const verify = async () =>
        JSON.parse(
          (await m.exec(['spark', 'verify', '--json', '--config', '/etc/laniakea/spark.toml'], { timeoutMs: 180_000 })).stdout,
        ) as Report;
      const line = (report: Report, name: string) => {
        const found = report.checks.find((c) => c.check === name);
        if (!found) throw new Error(`spark verify has no check ${name}: ${JSON.stringify(report.checks.map((c) => c.check))}`);
        return found;
      };
      const report = await verify();
      const expected: Record<string, RegExp> = {
        'systemd units': /^spark\.target is enabled$/,
        'spark-signer write access': new RegExp(`^may write ${WORKSPACES}$`),
        'spark-uploader write access': new RegExp(`^may write ${WORKSPACES}$`),
        'workspaces directory': new RegExp(`^${WORKSPACES}: root:lkspark 02770$`),
        'audit log directory': /^\/var\/log\/spark-signer: spark-signer:lkspark 0700$/,
        'Redis default user': new RegExp(`^${REDIS_SOCKET} answers, and refuses a client that does not log in`),
        'Redis server': new RegExp(
          `^${REDIS_SOCKET}: config /etc/redis/redis-spark\\.conf, maxmemory 1073741824 bytes, maxmemory-policy noeviction$`,
        ),
        'sudo for laniakea-spark': /^no user lkspark or _lkspark/,
      };
      const wrong = Object.entries(expected).flatMap(([name, pattern]) => {
        const found = line(report, name);
        return found.status === 'ok' && pattern.test(found.message) ? [] : [`${found.status} ${name}: ${found.message}`];
      });
      if (wrong.length > 0) throw new Error(wrong.join('\n'));
      // laniakea-spark's user and its rule, as spark-setup's Ansible wrote them.
      await m.sh(
        "useradd --system --no-user-group --gid nogroup --no-create-home --shell /usr/sbin/nologin lkspark && printf 'lkspark ALL=(ALL) NOPASSWD: /usr/bin/debspawn\\n' >/etc/sudoers.d/lkspark && chmod 0440 /etc/sudoers.d/lkspark && visudo -cqf /etc/sudoers.d/lkspark",
      );
      try {
        const flagged = line(await verify(), 'sudo for laniakea-spark');
        if (flagged.status !== 'problem' || !/lkspark may run \/usr\/bin\/debspawn.*see \/etc\/sudoers\.d\/lkspark/.test(flagged.message))
          throw new Error(`with the rule: ${flagged.status} ${flagged.message}`);
        await m.sh('rm /etc/sudoers.d/lkspark');
        const cleared = line(await verify(), 'sudo for laniakea-spark');
        if (cleared.status !== 'ok') throw new Error(`without the rule: ${cleared.status} ${cleared.message}`);
        return `${Object.keys(expected).length} checks OK; with the rule: ${flagged.message}; without: ${cleared.message}`;
      } finally {
        await m.sh('rm -f /etc/sudoers.d/lkspark; userdel lkspark');
      }
    },
  );

  await check(
    `${way.again} refuses a WorkspaceRoot the units hide or one through a link, and leaves a file edited by hand alone`,
    async () => {
      const config = '/etc/laniakea/spark.toml';
      const toml = await m.sh(`cat ${config}`);
      const writer = way.writer.replace(/[/.]/g, '\\$&');
      const refusals: [root: string, reason: RegExp][] = [
        [
          '/home/builds',
          new RegExp(
            `^${writer}: WorkspaceRoot /home/builds is below /home, /root, /run/user, /tmp or /var/tmp, which the services' units hide from them`,
            'm',
          ),
        ],
        [
          '/srv/builds-link',
          new RegExp(
            `^${writer}: WorkspaceRoot /srv/builds-link passes through a symbolic link \\(it resolves to /srv/spark-builds\\)`,
            'm',
          ),
        ],
      ];
      await m.sh('ln -sfn /srv/spark-builds /srv/builds-link');
      try {
        for (const [root, reason] of refusals) {
          // Through the share, as spark.toml came in: the machine's stdin is a socket, which /dev/stdin cannot open.
          await writeFile(join(share, 'spark-other-root.toml'), toml.replace(/^WorkspaceRoot = .*$/m, `WorkspaceRoot = '${root}/'`));
          // The operator's own spark.toml names the root; dpkg leaves the package half-configured.
          await m.sh(`cp ${config} /root/spark.toml.good && install -m 0644 ${SHARE}/spark-other-root.toml ${config}`);
          const result = await setUpAgain();
          if (result.code === 0 || !reason.test(result.stdout))
            throw new Error(`WorkspaceRoot ${root}: exit ${result.code}\n${result.stdout.slice(-1500)}`);
          // README: fix what it names, then dpkg --configure -a.
          await m.sh(`install -m 0644 /root/spark.toml.good ${config}`);
          const configured = await m.exec(['sh', '-c', 'DEBIAN_FRONTEND=noninteractive dpkg --configure -a 2>&1'], {
            timeoutMs: 600_000,
          });
          installOutput.push(configured.stdout);
          const state = (await m.sh("dpkg-query -W -f '${Status}' spark-ts")).trim();
          if (configured.code !== 0 || state !== 'install ok installed')
            throw new Error(`dpkg --configure -a after the refusal: exit ${configured.code}, ${state}\n${configured.stdout.slice(-1500)}`);
        }
      } finally {
        await m.sh(`rm -f /srv/builds-link; test ! -f /root/spark.toml.good || mv /root/spark.toml.good ${config}`);
      }
      // Without its first line, the file is the operator's.
      const file = '/etc/tmpfiles.d/spark.conf';
      await m.sh(`sed -i 1d ${file}`);
      const edited = await m.sh(`sha256sum ${file}`);
      const kept = await setUpAgain();
      if (
        kept.code !== 0 ||
        !kept.stdout.includes(`${file}: left as it is (its first line is not`) ||
        (await m.sh(`sha256sum ${file}`)) !== edited
      )
        throw new Error(`${way.again} with ${file} edited by hand: exit ${kept.code}\n${kept.stdout.slice(-1500)}`);
      await m.sh(`rm ${file}`);
      const restored = await setUpAgain();
      if (restored.code !== 0 || !restored.stdout.includes(`${file} written`))
        throw new Error(`${way.again} after removing ${file}: exit ${restored.code}`);
      return `refused /home/builds and /srv/builds-link (a failing exit, the reason; dpkg --configure -a recovered); kept the edited tmpfiles file, wrote it again once removed`;
    },
  );

  await check('no Redis password in the install output, the journal or spark status', async () => {
    const passwords = (await m.sh('cat /etc/laniakea/redis/*.password')).split('\n').filter(Boolean);
    const users = Object.keys(REDIS_USERS).length;
    if (passwords.length !== users) throw new Error(`expected ${users} password files (one per Redis user), read ${passwords.length}`);
    const journal = await m.sh('journalctl --no-pager -o cat');
    const status = await m.sh('spark status --config /etc/laniakea/spark.toml 2>&1 || true');
    for (const [where, text] of [
      ...installOutput.map((t, i) => [`install output ${i + 1}`, t] as const),
      ['the journal', journal] as const,
      ['spark status', status] as const,
    ]) {
      if (passwords.some((password) => text.includes(password))) throw new Error(`a Redis password is in ${where}`);
    }
    return `checked ${installOutput.length} install outputs, ${journal.split('\n').length} journal lines, spark status`;
  });

  const failed = results.filter((r) => !r.ok);
  return failed.length === 0 ? 0 : 1;
});
