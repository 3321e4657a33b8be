/*
 * npm run test:migrate — a host that runs laniakea-spark, migrated to
 * spark-ts with the README's steps ("Migrating a host from laniakea-spark"),
 * under a real systemd as PID 1:
 *
 *   a booted bookworm machine set up as laniakea-spark's worker guide and
 *   lkhq/spark-setup leave a host — the `lkspark` user and group, its
 *   spark.toml, its Curve keys, the OpenPGP key in its user's keyring, a
 *   `laniakea-spark.service` and the sudoers rule that lets `lkspark` run
 *   debspawn as root — and the host's own Redis configured for another
 *   application. The README's migration runs in it: its shell blocks as
 *   written, the steps it states in prose (stop the unit, name the key file in
 *   spark.toml) as an operator does them. spark-ts comes as an operator gets
 *   it: `npm run package` builds the Debian package on the host, and the
 *   README's step 5 installs it with apt (on bookworm the host's NodeSource
 *   nodejs first, as package.ts does); nothing of this checkout is in the
 *   machine. Then: `spark verify` passes, and
 *   fails with the right line and exit code for a missing key file, a wrong
 *   Curve server key, a changed Redis password and a suite without an image;
 *   `spark status` exit codes follow a Lighthouse outage and a stopped
 *   builder; `systemctl reload` applies a new PollInterval with a job in
 *   flight, which still succeeds once.
 *
 * laniakea-spark itself is a pip install this machine cannot fetch: its unit
 * runs `sleep infinity` as `lkspark`, so stopping and disabling it is real. The
 * debspawn the build helper runs is tools/host-runner/debspawn, as in the
 * deployment test (run.ts); its `list` is the real debspawn's, reading the
 * host's images, bound read-only.
 */
import { existsSync } from 'node:fs';
import { readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { curveKeyPair } from 'zeromq';
import { formatCurveKeyFile } from '@spark/keys';
import { waitFor, type LighthouseStandIn } from '@spark/testing';
import { POLL_MS, requestsFor } from './checks.js';
import { checkout, machineTest } from './frame.js';
import { packageIntoShare } from './package-share.js';
import { cachedRootfs } from './rootfs.js';
import { startWorld } from './world.js';

/** The worker's MachineName, as Lighthouse knows it. */
const MACHINE = 'spark-migrate-test';
const SHARE = '/root/migrate-share';
const CONFIG = '/etc/laniakea/spark.toml';
const CURVE_DIR = '/etc/laniakea/keys/curve';
const CURVE_SECRET = `${CURVE_DIR}/secret/${MACHINE}-spark_private.sec`;
const LIGHTHOUSE_KEY = `${CURVE_DIR}/${MACHINE}_lighthouse-server.pub`;
/** Where the README's step 3 installs the OpenPGP key. */
const OPENPGP_KEY = '/etc/laniakea/keys/hydrogen_secret.gpg';
const DEBSPAWN_IMAGES = '/var/lib/debspawn/images';

/** The shell blocks of the README's migration section, in order. */
async function migrationBlocks(): Promise<string[]> {
  const readme = await readFile(join(checkout, 'README.md'), 'utf8');
  const start = readme.indexOf('\n## Migrating a host from laniakea-spark');
  const end = readme.indexOf('\n### Rolling back to laniakea-spark', start);
  if (start < 0 || end < 0) throw new Error('README.md: no section "Migrating a host from laniakea-spark" followed by "Rolling back"');
  return [...readme.slice(start, end).matchAll(/^ *```sh\n([\s\S]*?)^ *```$/gm)].map((match) =>
    (match[1] ?? '')
      .split('\n')
      .map((line) => line.trim())
      .join('\n'),
  );
}

/** laniakea-spark's host, as its worker guide (seed/worker-setup.rst) and spark-setup's Ansible leave it. */
function laniakeaSparkHost(keyFile: string): string {
  return `
adduser --system --home=/var/lib/lkspark lkspark
addgroup lkspark
chown lkspark:lkspark /var/lib/lkspark
install -d -o lkspark -g lkspark /var/lib/lkspark/workspaces /var/lib/lkspark/logs
runuser -u lkspark -- gpg --batch --quiet --homedir /var/lib/lkspark/.gnupg --import <${SHARE}/${keyFile}
install -d -m 0755 /etc/laniakea ${CURVE_DIR}
install -d -m 0750 -g lkspark ${CURVE_DIR}/secret
install -m 0640 -g lkspark ${SHARE}/worker.sec ${CURVE_SECRET}
install -m 0644 ${SHARE}/lighthouse.pub ${LIGHTHOUSE_KEY}
install -m 0644 ${SHARE}/spark.toml ${CONFIG}
install -m 0755 ${SHARE}/debspawn /usr/local/bin/debspawn
printf 'lkspark ALL=(ALL) NOPASSWD: /usr/local/bin/debspawn\\n' >/etc/sudoers.d/lkspark
chmod 0440 /etc/sudoers.d/lkspark && visudo -cqf /etc/sudoers.d/lkspark
cat >/etc/systemd/system/laniakea-spark.service <<'UNIT'
[Unit]
Description=Laniakea Spark build worker (stand-in: the daemon is not installed in this test)
After=network-online.target
[Service]
User=lkspark
ExecStart=/bin/sleep infinity
[Install]
WantedBy=multi-user.target
UNIT
systemctl daemon-reload && systemctl enable --now laniakea-spark
`;
}

/** A Curve key file: a public key, or a key pair with its secret key. */
const keyFile = (id: string, pair: { publicKey: string; secretKey: string | null }) =>
  formatCurveKeyFile({
    metadata: { id },
    curvePublicKey: pair.publicKey,
    curveSecretKey: pair.secretKey,
    edVerifyKey: null,
    edSigningKey: null,
  });

await machineTest('migrate', { root: 'it builds a package and boots a machine with systemd-nspawn', dist: false }, async (t) => {
  const { say, check, allPassed, share } = t;
  const blocks = await migrationBlocks();
  if (blocks.length !== 4) {
    console.error(
      `test:migrate: README's migration has ${blocks.length} shell blocks; this test runs 4 (backup, key, sudoers, install): keep the two in step`,
    );
    return 2;
  }
  const [backupBlock, keyBlock, sudoersBlock, installBlock] = blocks as [string, string, string, string];
  const installLines = installBlock.split('\n').filter((line) => line.trim() !== '');

  // --- spark-ts as an operator gets it: the package, and (bookworm) the host's NodeSource nodejs.
  let deb = '';
  let nodejs = '';
  const packaged = await check('npm run package builds spark-ts, lintian clean; nodejs as NodeSource ships it', async () => {
    ({ deb, nodejs } = await packageIntoShare(share, say));
    // The README's step 5 names the file an operator copied to the worker: the one built here.
    if (!installLines[0]?.includes(`./${deb}`)) throw new Error(`README step 5 installs ${JSON.stringify(installLines[0])}, not ./${deb}`);
    return `${deb}, ${nodejs}`;
  });
  if (!packaged) return 1;

  // --- The world outside the worker: Lighthouse (trusting laniakea-spark's key), the archive, the sources.
  const workerKeys = curveKeyPair();
  const world = await startWorld(t, 'Spark Migration Test <spark-migrate-test@example.invalid>', {
    [`${MACHINE}.key`]: keyFile(MACHINE, { publicKey: workerKeys.publicKey, secretKey: null }),
  });
  const { archive, key } = world;
  let standIn: LighthouseStandIn = world.standIn;
  const endpoint = standIn.endpoint;

  await writeFile(join(share, 'worker.sec'), keyFile(MACHINE, workerKeys), { mode: 0o600 });
  await writeFile(join(share, 'lighthouse.pub'), world.lighthousePublic);
  await writeFile(join(share, 'other-lighthouse.pub'), keyFile('lighthouse', { publicKey: curveKeyPair().publicKey, secretKey: null }));
  await writeFile(join(share, 'openpgp.key'), await readFile(key.secretKeyFile), { mode: 0o644 });
  // laniakea-spark's spark.toml, as its guide writes it, with the MachineName Lighthouse knows the host by.
  await writeFile(
    join(share, 'spark.toml'),
    `LighthouseServer = '${endpoint}'
MachineName = '${MACHINE}'
AcceptedJobs = ['package-build']
MachineOwner = 'Spark migration test'
GpgKeyID = '${key.fingerprint}'
`,
  );

  const rootfs = await cachedRootfs(say);
  const m = await t.boot({
    rootfs,
    name: MACHINE,
    bindReadOnly: existsSync(DEBSPAWN_IMAGES) ? { [DEBSPAWN_IMAGES]: DEBSPAWN_IMAGES } : {},
    bind: { [share]: SHARE },
  });
  const sums = (files: string) => m.sh(`sha256sum ${files}`);
  const status = async () => (await m.exec(['spark', 'status', '--config', CONFIG])).code;
  type Report = { exitCode: number; checks: { check: string; status: string; message: string }[] };
  const verify = async () =>
    JSON.parse((await m.exec(['spark', 'verify', '--json', '--config', CONFIG], { timeoutMs: 180_000 })).stdout) as Report;
  const failing = (report: Report) => report.checks.filter((c) => c.status !== 'ok').map((c) => `${c.status} ${c.check}: ${c.message}`);

  let keysBefore = '';
  let hostRedisBefore = '';
  const host = await check('a laniakea-spark worker as its guide sets it up (user, keys, spark.toml, unit, sudoers rule)', async () => {
    await m.sh(laniakeaSparkHost('openpgp.key'));
    keysBefore = await sums(`${CURVE_SECRET} ${LIGHTHOUSE_KEY}`);
    hostRedisBefore = await m.sh('sha256sum /etc/redis/redis.conf; systemctl is-enabled redis-server || true');
    const active = (await m.sh('systemctl is-active laniakea-spark')).trim();
    return `laniakea-spark.service ${active}; sudo -l -U lkspark: ${(await m.sh('sudo -l -U lkspark | tail -1')).trim()}`;
  });
  if (!host) return 1;

  const migrated = await check("the README's migration steps run as written", async () => {
    const ran: string[] = [];
    // Step 1 (prose): stop laniakea-spark between jobs.
    await m.sh('systemctl disable --now laniakea-spark');
    ran.push('1 disable --now laniakea-spark');
    await m.sh(backupBlock);
    ran.push('2 backup');
    await m.sh(`GpgKeyID='${key.fingerprint}'\n${keyBlock}`);
    // Step 3 (prose): name the key in spark.toml, above any table; [builder] Suites for verify's image check.
    await m.sh(`sed -i "1i GpgSecretKeyFile = '${OPENPGP_KEY}'" ${CONFIG} && printf "\\n[builder]\\nSuites = ['bookworm']\\n" >>${CONFIG}`);
    ran.push('3 OpenPGP key');
    const holder = (await m.sh(sudoersBlock)).trim().split('\n')[0];
    ran.push(`4 sudoers (${holder})`);
    // Step 5: install and start, in the directory the package was copied to (bookworm's operator added NodeSource's
    // nodejs first, and the root file system's package lists are as old as it is), then check: verify at once;
    // status once the services have reported in.
    const [install, start, ...checkLines] = installLines;
    // apt asks before it installs the dependencies: the operator answers yes.
    await m.sh(`echo 'APT::Get::Assume-Yes "true";' >/etc/apt/apt.conf.d/90operator-says-yes`);
    await m.sh(`export DEBIAN_FRONTEND=noninteractive; apt-get update -qq && apt-get install -y -qq ${SHARE}/${nodejs}`, {
      timeoutMs: 600_000,
    });
    await m.sh(`cd ${SHARE} && DEBIAN_FRONTEND=noninteractive ${install ?? ''} 2>&1`, { timeoutMs: 600_000 });
    await m.sh(start ?? '', { timeoutMs: 120_000 });
    await waitFor('spark status healthy after the start', async () => (await status()) === 0, { timeoutMs: 90_000, intervalMs: POLL_MS });
    const checked = await m.exec(['/bin/sh', '-ec', checkLines.join('\n')], { timeoutMs: 180_000 });
    if (checked.code !== 0) throw new Error(`${checkLines.join('; ')}: exit ${checked.code}\n${checked.stdout}${checked.stderr}`);
    ran.push(`5 ${install}; ${start}; spark verify && spark status`);
    return ran.join('; ');
  });
  if (!migrated) return 1;

  await check('the host keeps its Curve keys and name: Lighthouse hears it with the key it trusted', async () => {
    const after = await sums(`${CURVE_SECRET} ${LIGHTHOUSE_KEY}`);
    if (after !== keysBefore) throw new Error(`the Curve key files changed:\nbefore ${keysBefore}\nafter ${after}`);
    const names = new Set(standIn.requests.map((r) => r['machine_name']));
    if (names.size !== 1 || !names.has(MACHINE)) throw new Error(`Lighthouse heard machine names ${JSON.stringify([...names])}`);
    if (standIn.refused.length > 0) throw new Error(`Lighthouse refused keys ${standIn.refused.join(', ')}`);
    const owner = (await m.sh(`stat -c '%U %a' ${CURVE_SECRET} ${OPENPGP_KEY}`)).trim().replace('\n', ', ');
    return `${standIn.requests.length} requests as ${MACHINE}, none refused; ${CURVE_SECRET}, ${OPENPGP_KEY}: ${owner}`;
  });

  await check("laniakea-spark is off and its sudo rule gone (kept in the backup); the host's own Redis is as it was", async () => {
    const unit = (await m.exec(['systemctl', 'is-enabled', 'laniakea-spark'])).stdout.trim();
    const active = (await m.exec(['systemctl', 'is-active', 'laniakea-spark'])).stdout.trim();
    if (unit !== 'disabled' || active !== 'inactive') throw new Error(`laniakea-spark.service ${unit}, ${active}`);
    const sudo = await m.sh('sudo -l -U lkspark');
    if (/debspawn/.test(sudo)) throw new Error(`sudo -l -U lkspark still lists debspawn:\n${sudo}`);
    await m.sh('test ! -e /etc/sudoers.d/lkspark && test -f /root/laniakea-spark-backup/lkspark && visudo -cq');
    const redis = await m.sh('sha256sum /etc/redis/redis.conf; systemctl is-enabled redis-server || true');
    if (redis !== hostRedisBefore) throw new Error(`the host's Redis: before ${hostRedisBefore}, after ${redis}`);
    return `laniakea-spark.service ${unit}, ${active}; sudo -l -U lkspark: ${sudo.trim().split('\n').pop()}; redis.conf unchanged`;
  });

  const ended = (uuid: string) => requestsFor(standIn.requests, uuid).some((r) => r === 'job-success' || r === 'job-failed');
  await check('systemctl reload spark-connector applies PollInterval live, with a job in flight that still succeeds once', async () => {
    const jobRequests = () =>
      standIn.receivedAt.filter((_, i) => standIn.requests[i]?.request === 'job' && standIn.requests[i]?.['machine_name'] === MACHINE);
    const medianGap = (from: number) => {
      const times = jobRequests().filter((t) => t >= from);
      const gaps = times
        .slice(1)
        .map((t, i) => t - (times[i] as number))
        .sort((a, b) => a - b);
      return gaps.length === 0 ? Number.NaN : (gaps[Math.floor(gaps.length / 2)] as number);
    };
    const idleFrom = Date.now();
    await waitFor('4 idle job requests', () => jobRequests().filter((t) => t >= idleFrom).length >= 4, {
      timeoutMs: 60_000,
      intervalMs: POLL_MS,
    });
    const before = medianGap(idleFrom);
    const connector = (await m.sh('systemctl show -p MainPID --value spark-connector')).trim();
    const job = await archive.packageJob({ name: 'reload-migrate', version: '1.0', buildCommands: ['sleep 8'] });
    standIn.addJob(job);
    await waitFor('the build running', async () => (await m.exec(['pgrep', '-f', '^sleep 8$'])).code === 0, {
      timeoutMs: 120_000,
      intervalMs: POLL_MS,
    });
    await m.sh(`printf "\\n[connector]\\nPollInterval = 1\\n" >>${CONFIG} && systemctl reload spark-connector`);
    await waitFor(
      'the connector applying it',
      async () => (await m.sh('journalctl -u spark-connector -o cat --no-pager')).includes('SIGHUP: applied [connector] PollInterval'),
      {
        timeoutMs: 20_000,
        intervalMs: POLL_MS,
      },
    );
    await waitFor('the job ended', () => ended(job.uuid), { timeoutMs: 180_000, intervalMs: POLL_MS });
    const told = requestsFor(standIn.requests, job.uuid);
    if (told.filter((r) => r === 'job-success').length !== 1 || told.includes('job-failed'))
      throw new Error(`Lighthouse heard for the job: ${told.join(', ')}`);
    const after = (await m.sh('systemctl show -p MainPID --value spark-connector')).trim();
    if (after !== connector) throw new Error(`the connector was restarted (pid ${connector}, now ${after})`);
    const reloadedFrom = Date.now();
    await waitFor('4 job requests after', () => jobRequests().filter((t) => t >= reloadedFrom).length >= 4, {
      timeoutMs: 60_000,
      intervalMs: POLL_MS,
    });
    const now = medianGap(reloadedFrom);
    if (!(before > 4_000 && now < 2_500))
      throw new Error(`idle job requests every ${before} ms before, ${now} ms after (PollInterval 5 s, then 1 s)`);
    return `job requests every ${(before / 1000).toFixed(1)} s, then ${(now / 1000).toFixed(1)} s; the job: ${told.join(', ')}; connector pid ${after} kept`;
  });

  await check('spark verify names each fault on its line, with its exit code, and passes again once it is mended', async () => {
    const healthy = await verify();
    if (healthy.exitCode !== 0) throw new Error(`before the faults: exit ${healthy.exitCode}\n${failing(healthy).join('\n')}`);
    const faults: { fault: string; make: string; mend: string; check: RegExp; message: RegExp; code: number }[] = [
      {
        fault: 'the OpenPGP key file missing',
        make: `mv ${OPENPGP_KEY} ${OPENPGP_KEY}.away`,
        mend: `mv ${OPENPGP_KEY}.away ${OPENPGP_KEY}`,
        check: /^OpenPGP secret key$/,
        message: /hydrogen_secret\.gpg/,
        code: 66,
      },
      {
        fault: "another server's Curve key as Lighthouse's",
        make: `cp -p ${LIGHTHOUSE_KEY} /root/lighthouse.pub && install -m 0644 ${SHARE}/other-lighthouse.pub ${LIGHTHOUSE_KEY}`,
        mend: `cp -p /root/lighthouse.pub ${LIGHTHOUSE_KEY}`,
        check: /^Lighthouse$/,
        message: /the CURVE handshake did not complete.*is probably not Lighthouse's/,
        code: 78,
      },
      {
        fault: "a Redis password changed (spark-builder's file)",
        make: 'cp -p /etc/laniakea/redis/spark-builder.password /root/builder.password && printf changed-by-hand >/etc/laniakea/redis/spark-builder.password',
        mend: 'cp -p /root/builder.password /etc/laniakea/redis/spark-builder.password',
        check: /^Redis user spark-builder$/,
        message: /WRONGPASS/,
        code: 78,
      },
      {
        fault: 'a suite without a debspawn image',
        make: `sed -i "s/^Suites = .*/Suites = ['bookworm', 'trixie']/" ${CONFIG}`,
        mend: `sed -i "s/^Suites = .*/Suites = ['bookworm']/" ${CONFIG}`,
        check: /^debspawn image trixie\/amd64$/,
        message: /debspawn create --arch=amd64 trixie/,
        code: 69,
      },
    ];
    const seen: string[] = [];
    for (const fault of faults) {
      await m.sh(fault.make);
      let report: Report;
      try {
        report = await verify();
      } finally {
        await m.sh(fault.mend);
      }
      const lines = failing(report).filter((line) => !line.startsWith('skipped'));
      const named = report.checks.filter((c) => c.status === 'problem' && fault.check.test(c.check) && fault.message.test(c.message));
      if (report.exitCode !== fault.code || named.length === 0)
        throw new Error(`${fault.fault}: exit ${report.exitCode} (expected ${fault.code})\n${lines.join('\n')}`);
      seen.push(`${fault.fault} → exit ${report.exitCode}, FAIL ${named[0]?.check}: ${named[0]?.message}`);
    }
    const mended = await verify();
    if (mended.exitCode !== 0) throw new Error(`after mending: exit ${mended.exitCode}\n${failing(mended).join('\n')}`);
    return seen.join('\n      ');
  });

  await check('spark status exit codes follow a Lighthouse outage (5) and a stopped builder (4), and go back to 0', async () => {
    const seen: string[] = [];
    const expect = async (code: number, what: string) => {
      await waitFor(`spark status exit ${code} (${what})`, async () => (await status()) === code, {
        timeoutMs: 180_000,
        intervalMs: 1_000,
        detail: async () => (await m.exec(['spark', 'status', '--config', CONFIG])).stdout,
      });
      seen.push(`${what}: ${code}`);
    };
    await expect(0, 'healthy');
    standIn.close();
    await expect(5, 'Lighthouse gone');
    standIn = await world.restartLighthouse();
    await expect(0, 'Lighthouse back');
    await m.sh("systemctl stop 'spark-builder@1'");
    await expect(4, 'builder stopped');
    await m.sh("systemctl start 'spark-builder@1'");
    await expect(0, 'builder started');
    return seen.join(', ');
  });

  return allPassed() ? 0 : 1;
});
