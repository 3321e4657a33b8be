/*
 * npm run test:hostile — a compromised builder against the real debspawn and
 * the rest of the trust boundary, as deployed: the builder runs as
 * spark-builder with its own Redis password, reaches debspawn only through
 * `sudo -n` and the installed build helper, and the helper runs the real
 * debspawn (its `bookworm` image) in its sandbox. Everything runs on this host
 * (nested containers do not work in the deployment test's machine), so the
 * suite sets up what the package would — the users, the build helper (at
 * /usr/local/sbin/spark-build-helper, the path deploy/ names for a host
 * without the package), the sudoers rule,
 * /etc/laniakea/spark.toml — and removes it again.
 *
 * First what a package's build scripts and an image recipe can do through
 * debspawn (links to the canaries, a FIFO, a poisoned prepared image, a
 * planted temp dir, a handle into the helper's directory). Then the builder
 * itself, compromised (trust-boundary.ts; as-builder.ts runs as spark-builder
 * with its password file and its filesystem rights, never as root): it takes
 * real hand-outs from the `build` queue — the connector recorded them as for
 * any builder, so the signer's checks against the record apply — and hands
 * the signer a `.buildinfo` that is another package's `.changes` or another
 * job's `.dud` (a signing oracle) and a `.changes` naming another source's
 * package; swaps the `.deb` of a signed round while it waits for the
 * uploader; calls the read-write dashboard's API without its token; sends the
 * Redis commands that list keys and clients; and floods its report queue
 * ahead of an honest job's reports.
 *
 * Canaries: a root-only file in the key directory (/etc/laniakea/keys), the
 * chain's Curve secret key, OpenPGP key and each Redis password file,
 * /etc/shadow, and a root-only file in a directory nothing names. Each attack
 * must be refused or harmless with its reason, nothing foreign may be signed
 * by the archive key, and no canary byte may show up in anything the builder
 * can read, in an upload or at Lighthouse. Honest package and image builds
 * between the attacks must succeed, the packages' .changes verifying with
 * gpgv. The suite ends with a table of attacks and outcomes.
 */
import { execFile, spawn } from 'node:child_process';
import { randomBytes, randomUUID } from 'node:crypto';
import { existsSync, realpathSync } from 'node:fs';
import { chmod, chown, mkdir, readdir, readFile, rename, rm, stat, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { connectRedis, redisLogin, redisReady } from '@spark/service';
import { waitFor, type StandInJob } from '@spark/testing';
import { startChain, type Chain, type ServiceName } from '../src/chain/chain.js';
import { FOREIGN_DEB } from './hostile-content.js';
import { filesBelow, type JobEnd, type Suite } from './suite.js';
import {
  dashboardWithoutToken,
  foreignBinaries,
  handOutRounds,
  redisListing,
  reportFlood,
  signingOracle,
  swappedAfterSigning,
} from './trust-boundary.js';

const run = promisify(execFile);
const checkout = realpathSync(fileURLToPath(new URL('../../', import.meta.url)));
const started = Date.now();
const say = (line: string) => console.log(`[${((Date.now() - started) / 1000).toFixed(0).padStart(4)} s] ${line}`);

const HELPER = '/usr/local/sbin/spark-build-helper';
const SUDOERS = '/etc/sudoers.d/10spark-builder';
const CONFIG = '/etc/laniakea/spark.toml';
const KEY_DIR = '/etc/laniakea/keys';
const STATE_DIR = '/var/lib/spark-build-helper';
const DIR = '/var/lib/spark-hostile-test';
/** Marks the files this suite installed, so it never removes an operator's. */
const MARK = '# written by spark-ts tools/hostile-build (removed when it ends)';
const USERS = ['spark-connector', 'spark-builder', 'spark-signer', 'spark-uploader'] as const;
/** The compromised builder, run as spark-builder. */
const AS_BUILDER = fileURLToPath(new URL('as-builder.ts', import.meta.url));
/** Bogus reports the builder floods its report queue with. */
const FLOOD_REPORTS = 50_000;

interface Outcome {
  attack: string;
  ok: boolean;
  outcome: string;
}
const outcomes: Outcome[] = [];
/** The services' last log lines, shown when an attack's check fails. */
const logs: string[] = [];
const undo: (() => Promise<unknown>)[] = [];

async function attempt(attack: string, body: () => Promise<string>): Promise<void> {
  try {
    const outcome = await body();
    outcomes.push({ attack, ok: true, outcome });
    say(`ok   ${attack}: ${outcome}`);
  } catch (error) {
    outcomes.push({ attack, ok: false, outcome: (error as Error).message });
    say(`FAIL ${attack}: ${(error as Error).message}\n${logs.slice(-40).join('\n')}`);
  }
}

async function ids(user: string): Promise<{ uid: number; gid: number }> {
  const [uid, gid] = await Promise.all([run('id', ['-u', user]), run('id', ['-g', user])]);
  return { uid: Number(uid.stdout), gid: Number(gid.stdout) };
}

/** What the package sets up that the builder's path to debspawn needs: users, the helper, the sudoers rule. */
async function deployOnHost(): Promise<void> {
  if (existsSync(CONFIG) && !(await readFile(CONFIG, 'utf8')).includes(MARK)) {
    throw new Error(`${CONFIG} exists and is not this suite's: run it on a test host only`);
  }
  await run('sh', ['-c', 'getent group lkspark >/dev/null || groupadd --system lkspark']);
  for (const user of USERS) {
    await run('sh', [
      '-c',
      `id ${user} >/dev/null 2>&1 || useradd --system --gid lkspark --home-dir /nonexistent --no-create-home --shell /usr/sbin/nologin ${user}`,
    ]);
  }
  for (const file of [HELPER, SUDOERS]) {
    if (existsSync(file) && !(await readFile(file, 'utf8')).includes(MARK)) throw new Error(`${file} exists and is not this suite's`);
  }
  await mkdir('/usr/local/sbin', { recursive: true });
  await writeFile(HELPER, `#!/bin/sh\n${MARK}\nexec ${process.execPath} ${checkout}/apps/build-helper/dist/main.js "$@"\n`, {
    mode: 0o755,
  });
  undo.push(() => rm(HELPER, { force: true }));
  const rule = `${MARK}\n${await readFile(join(checkout, 'deploy/sudoers/10spark-builder'), 'utf8')}`;
  await writeFile(`${SUDOERS}.tmp`, rule, { mode: 0o440 });
  await run('visudo', ['-cqf', `${SUDOERS}.tmp`]);
  await rename(`${SUDOERS}.tmp`, SUDOERS);
  undo.push(() => rm(SUDOERS, { force: true }));
}

/** A file of `bytes` only `owner` may read, as the worker's secrets are. */
async function canary(path: string, owner: string): Promise<Buffer> {
  const bytes = Buffer.from(`CANARY-${randomBytes(24).toString('hex')}\n`);
  await writeFile(path, bytes, { mode: 0o600 });
  const { uid, gid } = await ids(owner);
  await chown(path, uid, gid);
  return bytes;
}

/** A git repository of `files` owned by spark-builder (git refuses a repository of another user). */
async function recipeRepo(dir: string, files: Record<string, string>, links: Record<string, string> = {}): Promise<string> {
  await mkdir(dir, { recursive: true });
  for (const [name, content] of Object.entries(files)) await writeFile(join(dir, name), content, { mode: 0o755 });
  for (const [name, target] of Object.entries(links)) await run('ln', ['-s', target, join(dir, name)]);
  const git = (...args: string[]) =>
    run('git', ['-c', 'user.name=Spark Tests', '-c', 'user.email=spark-tests@example.org', '-C', dir, ...args]);
  await git('init', '-q');
  await git('add', '-A');
  await git('commit', '-q', '-m', 'recipe');
  const { uid, gid } = await ids('spark-builder');
  await run('chown', ['-R', `${uid}:${gid}`, dir]);
  return dir;
}

function imageJob(gitUrl: string, environment: string): StandInJob {
  return {
    uuid: randomUUID(),
    module: 'core',
    kind: 'os-image-build',
    version: '1',
    architecture: 'amd64',
    time_created: new Date().toISOString().slice(0, 19),
    repo: 'master',
    data: {
      image_format: 'img',
      git_url: gitUrl,
      distribution: 'spark',
      suite: 'bookworm',
      environment,
      style: null,
      architecture: 'amd64',
    },
  };
}

async function main(): Promise<number> {
  if (process.getuid?.() !== 0) throw new Error('needs root (it installs the helper and the sudoers rule, and runs the real debspawn)');
  const { stdout: images } = await run('debspawn', ['list']).catch(() => ({ stdout: '' }));
  if (!/bookworm/.test(images)) throw new Error('needs the debspawn image for bookworm (bash scripts/setup.sh creates it)');
  await run('sh', ['-c', `cd ${checkout} && NX_DAEMON=false npx nx run-many -t build -p @spark/build-helper --outputStyle=static`]);

  await deployOnHost();
  await rm(DIR, { recursive: true, force: true });
  await mkdir(DIR, { mode: 0o755 });
  undo.push(() => rm(DIR, { recursive: true, force: true }));
  const lkspark = join(DIR, 'lkspark');
  for (const sub of ['', 'workspaces', 'logs']) {
    await mkdir(join(lkspark, sub), { recursive: true });
    await chown(join(lkspark, sub), 0, (await ids('spark-builder')).gid);
    await chmod(join(lkspark, sub), 0o2770);
  }

  // The canaries.
  const secrets = new Map<string, Buffer>();
  await mkdir(KEY_DIR, { recursive: true, mode: 0o755 });
  const keyCanary = join(KEY_DIR, `hostile-canary-${process.pid}.key`);
  secrets.set(keyCanary, await canary(keyCanary, 'spark-signer'));
  undo.push(() => rm(keyCanary, { force: true }));
  const hidden = `/srv/spark-unnamed-${randomBytes(6).toString('hex')}`;
  await mkdir(hidden, { mode: 0o700 });
  undo.push(() => rm(hidden, { recursive: true, force: true }));
  secrets.set(join(hidden, 'canary'), await canary(join(hidden, 'canary'), 'root'));
  const shadow = await readFile('/etc/shadow');
  secrets.set('/etc/shadow', shadow.subarray(0, Math.min(shadow.length, 64)));

  const builder = await ids('spark-builder');
  /** setpriv's arguments that run `command` as spark-builder: its uid, its group, no other groups (as the chain starts it). */
  const setprivBuilder = (command: string, ...args: string[]) => [
    `--reuid=${builder.uid}`,
    `--regid=${builder.gid}`,
    '--clear-groups',
    command,
    ...args,
  ];
  const listeners = new Set<(service: ServiceName, line: string) => void>();
  const chain: Chain = await startChain({
    dir: DIR,
    runner: 'debspawn',
    redisAcl: true,
    users: { builder },
    acceptedJobs: ['package-build', 'os-image-build'],
    onLog: (service, line) => {
      logs.push(`${service}: ${line}`);
      if (logs.length > 2000) logs.splice(0, 1000);
      for (const listener of listeners) listener(service, line);
      if (process.env['SPARK_HOSTILE_VERBOSE']) console.log(`${service}: ${line}`);
    },
  });
  undo.push(() => chain.close());
  const curveSecret = (await filesBelow(join(DIR, 'keys'))).find((file) => file.endsWith('.sec'));
  for (const file of [curveSecret, chain.key.secretKeyFile, ...(await filesBelow(join(DIR, 'redis-credentials')))]) {
    if (file) secrets.set(file, (await readFile(file)).subarray(0, 64));
  }
  const config = await readFile(chain.configFile, 'utf8');
  await writeFile(CONFIG, `${MARK}\n${config}`, { mode: 0o644 });
  undo.push(() => rm(CONFIG, { force: true }));
  chain.start();
  say(`chain up in ${DIR}; the builder runs as spark-builder (uid ${builder.uid}) through sudo and ${HELPER}`);

  const admin = connectRedis(chain.redis.url, 'worker', redisLogin(chain.config.redisCredentialsDir, 'admin'));
  undo.push(() => admin.quit());
  await redisReady(admin);
  const asBuilderUser = (command: string, args: string[], options: { timeout?: number } = {}) =>
    run('setpriv', setprivBuilder(command, ...args), {
      cwd: checkout,
      env: { ...process.env, HOME: '/nonexistent', USER: 'spark-builder' },
      maxBuffer: 64 * 1024 * 1024,
      ...options,
    });
  const requestsOf = (uuid: string) => chain.lighthouseRequests().filter((request) => request['uuid'] === uuid);
  const endOf = (uuid: string) =>
    requestsOf(uuid).find((request) => request.request === 'job-success' || request.request === 'job-failed')?.request as
      JobEnd | undefined;
  const suite: Suite = {
    chain,
    configFile: CONFIG,
    admin,
    say,
    requestsOf,
    said: (uuid) => JSON.stringify(requestsOf(uuid)),
    endOf,
    ending: (uuid, timeoutMs = 600_000) =>
      waitFor(`the end of ${uuid} at Lighthouse`, () => Promise.resolve(endOf(uuid)), { timeoutMs, intervalMs: 500 }),
    async packageJob(spec) {
      const job = await chain.archive.packageJob(spec);
      chain.standIn.addJob(job);
      return job.uuid;
    },
    async asBuilder(args, timeoutMs = 300_000) {
      const command = ['--conditions=@spark/source', '--import', 'tsx', AS_BUILDER, ...args, '--config', CONFIG];
      const { stdout } = await asBuilderUser(process.execPath, command, { timeout: timeoutMs }).catch(
        (error: Error & { stdout?: string; stderr?: string }) => {
          throw new Error(`as-builder.ts ${args.join(' ')} as spark-builder: ${error.message}\n${error.stdout ?? ''}`);
        },
      );
      return stdout
        .split('\n')
        .filter((line) => line.startsWith('{'))
        .map((line) => JSON.parse(line) as Record<string, unknown>);
    },
    onLog(listener) {
      listeners.add(listener);
      return () => listeners.delete(listener);
    },
  };
  const { said, ending, packageJob } = suite;
  const targets = [...secrets.keys()];

  await attempt('debian/rules links ../leak-N.txt and a .deb name to every canary', async () => {
    const uuid = await packageJob({
      name: 'leaky',
      version: '1.0',
      buildCommands: [...targets.map((target, index) => `ln -s ${target} ../leak-${index}.txt`), `ln -s ${keyCanary} ../leaky_1.0_all.deb`],
    });
    const end = await ending(uuid);
    if (end !== 'job-failed') throw new Error(`the job ended ${end}`);
    const reason = /build output holds a symbolic link: [^"\\]+/.exec(said(uuid))?.[0];
    if (!reason) throw new Error(`failed without the reason at Lighthouse: ${said(uuid).slice(-400)}`);
    return `job-failed, "${reason}"`;
  });

  await attempt('debian/rules leaves a FIFO among the results', async () => {
    const uuid = await packageJob({ name: 'fifo', version: '1.0', buildCommands: ['mkfifo ../fifo.pipe'] });
    const end = await ending(uuid);
    const reason = /build output holds a FIFO: [^"\\]+/.exec(said(uuid))?.[0];
    if (end !== 'job-failed' || !reason) throw new Error(`ended ${end} without the reason: ${said(uuid).slice(-300)}`);
    return `job-failed, "${reason}"`;
  });

  await attempt('a recipe whose checkout links to every canary', async () => {
    const links = Object.fromEntries(targets.map((target, index) => [`link-${index}.txt`, target]));
    const repo = await recipeRepo(
      join(DIR, 'recipes', 'linking'),
      { 'build.sh': '#!/bin/sh\ncat link-*.txt > /srv/artifacts/seen.img\n' },
      links,
    );
    const job = imageJob(repo, 'linking');
    chain.standIn.addJob(job);
    const end = await ending(job.uuid);
    const reason = /the recipe holds a symbolic link out of its checkout: [^"\\]+/.exec(said(job.uuid))?.[0];
    if (end !== 'job-failed' || !reason) throw new Error(`ended ${end} without the reason: ${said(job.uuid).slice(-300)}`);
    return `job-failed, "${reason}"`;
  });

  await attempt("a recipe's build links an image artifact to a canary", async () => {
    const repo = await recipeRepo(join(DIR, 'recipes', 'leaky'), { 'build.sh': `#!/bin/sh\nln -s ${keyCanary} /srv/artifacts/leak.img\n` });
    const job = imageJob(repo, 'leaky');
    chain.standIn.addJob(job);
    const end = await ending(job.uuid);
    const reason = /build output holds a symbolic link: [^"\\]+/.exec(said(job.uuid))?.[0];
    if (end !== 'job-failed' || !reason) throw new Error(`ended ${end} without the reason: ${said(job.uuid).slice(-300)}`);
    return `job-failed, "${reason}"`;
  });

  // A compromised builder looks for a handle into the helper's private directory while image runs go on.
  const watcher = spawn(
    'setpriv',
    setprivBuilder(
      'sh',
      '-c',
      `while :; do for p in /proc/[0-9]*; do c=$(readlink $p/cwd 2>/dev/null) || continue; case $c in ${STATE_DIR}*) ls $p/cwd/ >/dev/null 2>&1 && echo "entered $c";; esac; done; done`,
    ),
    { stdio: ['ignore', 'pipe', 'ignore'] },
  );
  let entered = '';
  watcher.stdout.on('data', (chunk: Buffer) => (entered += chunk.toString()));
  undo.push(() => Promise.resolve(watcher.kill('SIGKILL')));

  let poisoned = '';
  await attempt('a recipe poisons the prepared-image cache for the next recipe with the same environment', async () => {
    const a = await recipeRepo(join(DIR, 'recipes', 'poison'), {
      'prepare.sh': '#!/bin/sh\necho poisoned > /etc/spark-poison\n',
      'build.sh': '#!/bin/sh\necho a > /srv/artifacts/a.img\n',
    });
    const jobA = imageJob(a, 'shared');
    chain.standIn.addJob(jobA);
    if ((await ending(jobA.uuid)) !== 'job-success')
      throw new Error(`the poisoning recipe's own build failed: ${said(jobA.uuid).slice(-300)}`);
    const b = await recipeRepo(join(DIR, 'recipes', 'honest'), {
      'prepare.sh': '#!/bin/sh\ntrue\n',
      'build.sh': '#!/bin/sh\nif [ -e /etc/spark-poison ]; then echo POISONED; else echo clean; fi > /srv/artifacts/state.img\n',
    });
    const jobB = imageJob(b, 'shared');
    chain.standIn.addJob(jobB);
    if ((await ending(jobB.uuid)) !== 'job-success') throw new Error(`the honest image build failed: ${said(jobB.uuid).slice(-300)}`);
    const uploaded = (await filesBelow(chain.uploadsDir)).filter((file) => file.endsWith('state.img'));
    poisoned = (await Promise.all(uploaded.map((file) => readFile(file, 'utf8')))).join('').trim();
    if (poisoned !== 'clean') throw new Error(`the honest recipe's image saw: ${poisoned || 'no state.img uploaded'}`);
    const cache = await stat('/var/lib/debspawn/images/dcache');
    if ((cache.mode & 0o077) !== 0 || cache.uid !== 0)
      throw new Error(`the prepared-image cache is mode ${(cache.mode & 0o777).toString(8)}`);
    return 'the honest recipe got its own prepared image ("clean"); honest image build uploaded; cache dir root-only (0700)';
  });

  await attempt("the builder plants debspawn's temp dir (/var/tmp/debspawn -> the key dir) before a build", async () => {
    // debspawn's default TempDir, which the builder unit's PrivateTmp /var/tmp holds: the builder makes it first.
    // Host-wide here, so only for this one build (a debspawn run outside the sandbox would follow it).
    const hostTemp = '/var/tmp/debspawn';
    const saved = `${hostTemp}.hostile-saved-${process.pid}`;
    const restore = async () => {
      await rm(hostTemp, { recursive: true, force: true });
      if (existsSync(saved)) await rename(saved, hostTemp);
    };
    undo.push(restore);
    if (existsSync(hostTemp)) await rename(hostTemp, saved);
    await asBuilderUser('ln', ['-s', KEY_DIR, hostTemp]);
    const keyDirBefore = (await readdir(KEY_DIR)).sort().join(',');
    const uuid = await packageJob({ name: 'honest', version: '1.0' });
    const ended = await ending(uuid);
    const after = (await readdir(KEY_DIR)).sort().join(',');
    await restore();
    if (ended !== 'job-success') throw new Error(`the honest package build failed: ${said(uuid).slice(-300)}`);
    if (after !== keyDirBefore) throw new Error(`the key directory changed: ${keyDirBefore} -> ${after}`);
    const changes = (await filesBelow(chain.uploadsDir)).find((file) => /honest_1\.0_amd64\.changes$/.test(file));
    if (!changes) throw new Error('no honest_1.0_amd64.changes uploaded');
    await run('gpgv', ['--keyring', chain.key.keyring, changes]);
    return "not used (debspawn's temp dir is the run's own); honest package build uploaded, its .changes verifies with gpgv";
  });

  watcher.kill('SIGKILL');
  await attempt("the builder holds a handle into the helper's private directory (/proc/<pid>/cwd)", () => {
    if (entered !== '') return Promise.reject(new Error(entered.trim().split('\n').slice(0, 3).join('; ')));
    return Promise.resolve("never entered: the helper's processes there run as root or a throwaway uid");
  });

  // The compromised builder against the rest of the trust boundary (trust-boundary.ts).
  const rounds = handOutRounds(suite);
  rounds.catch(() => undefined);
  await attempt('signing oracle: a .buildinfo that is the text of a .changes for another package, or of a .dud for another job', async () =>
    signingOracle(suite, await rounds),
  );
  await attempt(`a .changes whose Binary names, or whose Files list, ${FOREIGN_DEB} for its own source`, async () =>
    foreignBinaries(suite, await rounds),
  );
  await attempt('the .deb of a signed round swapped while it waits for the uploader (a link to its password file; other bytes)', async () =>
    swappedAfterSigning(suite, await rounds),
  );
  chain.start('uploader');
  await attempt('the read-write dashboard called by the builder without the token', () => dashboardWithoutToken(suite));
  await attempt("SCAN, KEYS, RANDOMKEY, DBSIZE, OBJECT, MEMORY, CLIENT, PUBSUB with the builder's Redis password", () =>
    redisListing(suite),
  );
  await attempt(`${FLOOD_REPORTS} bogus reports in report-builder, queued ahead of an honest job's reports`, () =>
    reportFlood(suite, FLOOD_REPORTS),
  );

  await attempt('no canary byte anywhere the builder can read, in an upload or at Lighthouse', async () => {
    const places = [
      ...(await filesBelow(lkspark)),
      ...(await filesBelow(chain.uploadsDir)),
      ...(await filesBelow(join(DIR, 'recipes'))).filter((file) => !file.includes('/.git/')),
    ];
    const lighthouse = Buffer.from(JSON.stringify(chain.lighthouseRequests()));
    for (const [secret, bytes] of secrets) {
      const needle = bytes.subarray(0, Math.min(bytes.length, 40));
      if (lighthouse.includes(needle)) throw new Error(`${secret} reached Lighthouse`);
      for (const file of places) if ((await readFile(file)).includes(needle)) throw new Error(`${secret} found in ${file}`);
    }
    return `${secrets.size} canaries, ${places.length} files and every Lighthouse request searched`;
  });

  const width = Math.max(...outcomes.map((o) => o.attack.length));
  console.log(`\n${'attack'.padEnd(width)}  outcome`);
  for (const o of outcomes) console.log(`${o.attack.padEnd(width)}  ${o.ok ? '' : 'FAILED: '}${o.outcome}`);
  const failed = outcomes.filter((o) => !o.ok).length;
  console.log(`\nhostile-build: ${outcomes.length - failed} passed, ${failed} failed`);
  return failed === 0 ? 0 : 1;
}

let code = 1;
// Interrupted: undo what was set up on the host all the same (the finally below runs it).
let interrupted = false;
for (const signal of ['SIGINT', 'SIGTERM'] as const) {
  process.on(signal, () => {
    if (interrupted) process.exit(130);
    interrupted = true;
    void (async () => {
      for (const step of undo.reverse()) await step().catch(() => undefined);
      process.exit(130);
    })();
  });
}
try {
  code = await main();
} catch (error) {
  console.error(`hostile-build: ${(error as Error).stack ?? String(error)}`);
} finally {
  for (const step of undo.reverse()) await step().catch((error: unknown) => console.error(`cleanup: ${String(error)}`));
}
process.exit(code);
