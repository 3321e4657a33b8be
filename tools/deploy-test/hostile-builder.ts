/*
 * The hostile builder of the deployment test, run INSIDE the booted machine
 * as spark-builder, with the builder unit's settings, its real Redis password
 * and its real sudo rule (tools/deploy-test/run.ts starts it with
 * systemd-run). Nothing here is given more than a compromised builder has:
 * what it reaches is exactly what the production setup lets it reach.
 *
 *   hostile-builder.ts probe [--config FILE] [--audit-log FILE]
 *     tries the escapes that need no job: the build helper's other debspawn
 *     subcommands, paths and links, sudo for anything else, Redis keys,
 *     queues and commands outside its ACL, the other users' Redis passwords,
 *     the OpenPGP key, the signer's audit log (where the signer writes it:
 *     --audit-log, as its unit's LogsDirectory= puts it). Prints one JSON
 *     line per try.
 *   hostile-builder.ts build COUNT [--config FILE]
 *     stands in for spark-builder@1 (stopped by the test): announces COUNT
 *     free slots, takes COUNT jobs from the build queue, and for each one
 *     hands the signer what its package name asks for (a .changes for
 *     another package, version, suite or architecture, a .dud for another
 *     job, links, a directory swapped during signing …). Prints one JSON line
 *     per job, waits until the signer has taken every sign job, then queues
 *     reports that are not its to send (a success, a rejection of a round it
 *     handed on, an accepted for a job never handed out).
 *
 * The test on the host checks the outcome: every refusal written to the
 * audit log and reported failed, nothing signed or uploaded.
 */
import { execFile } from 'node:child_process';
import { constants } from 'node:fs';
import { link, lstat, mkdir, open, readFile, rename, rm, symlink, unlink, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { parseArgs, promisify } from 'node:util';
import { Job as QueueJob, Queue } from 'bullmq';
import { DEFAULT_CONFIG_FILE, DEFAULT_SIGNER_KEY_CREDENTIAL, loadConfig, SIGNER_KEY_CREDSTORE, type SparkConfig } from '@spark/config';
import {
  archiveTargetsKey,
  jobArtifactsDir,
  jobRecordKey,
  jobWorkspaceDir,
  lighthouseStatusKey,
  parseJobId,
  prefixPattern,
  QueueName,
  queueKey,
  REDIS_KEY_FAMILIES,
  REPORT_QUEUES,
  signerRoundKey,
  stageJobId,
  uploadProgressKey,
  type JobRound,
  type Manifest,
} from '@spark/protocol';
import { redisPasswordFile, REDIS_USERS, sendReport } from '@spark/service';
import {
  attempt,
  builderRedis,
  changesText,
  dudText,
  listingCommands,
  out,
  tryCommands,
  sha256,
  takeBuildJobs,
  writeRound,
  type Attempt,
  type ChangesFields,
} from '../src/hostile/compromised-builder.js';

const run = promisify(execFile);
/** The build helper the builder's sudo rule names (`--helper`): the package's, or install.sh's from a checkout. */
let helperPath = '/usr/sbin/spark-build-helper';
/** A job Lighthouse never handed out to this worker, which the hostile builder still says it accepted. */
const NEVER_HANDED_OUT = '33333333-3333-4333-8333-333333333333';

/** The signer's key on disk: the file in clear, or the encrypted credential (`spark keytool install-signer-key`). */
function signerKeyFile(config: SparkConfig): string {
  return config.gpgSecretKeyFile ?? join(SIGNER_KEY_CREDSTORE, config.gpgSecretKeyCredential ?? DEFAULT_SIGNER_KEY_CREDENTIAL);
}

/** The escapes that need no job in hand; `audit` is the signer's audit log. */
async function probe(config: SparkConfig, audit: string): Promise<void> {
  const p = config.queuePrefix;
  const helper = (...args: string[]) => run('sudo', ['-n', helperPath, ...args], { timeout: 30_000 });
  const tries: Attempt[] = [];
  // The build helper: other debspawn subcommands, paths outside the workspaces, links.
  tries.push(await attempt('helper login', () => helper('login', 'bookworm')));
  tries.push(await attempt('helper list', () => helper('list')));
  tries.push(
    await attempt('helper build --results-dir=/etc', () =>
      helper('build', '--arch=amd64', '--only=binary', '--results-dir=/etc', 'bookworm', '/etc/passwd.dsc'),
    ),
  );
  tries.push(
    await attempt('helper run --build-dir /etc/laniakea', () =>
      helper(
        'run',
        '--external-command',
        '--arch=amd64',
        '--artifacts-out',
        '/tmp',
        '--build-dir',
        '/etc/laniakea',
        '--header=x',
        'bookworm',
        '/bin/sh',
      ),
    ),
  );
  const linked = join(config.workspacesDir, '00000000-0000-4000-8000-00000000dead.1');
  await rm(linked, { recursive: true, force: true });
  await mkdir(join(linked, 'results'), { recursive: true });
  await symlink('/etc/laniakea', join(linked, 'src'));
  tries.push(
    await attempt('helper build through a link in the workspace', () =>
      helper('build', '--arch=amd64', '--only=binary', `--results-dir=${linked}/results`, 'bookworm', `${linked}/src/x.dsc`),
    ),
  );
  await rm(linked, { recursive: true, force: true });
  tries.push(await attempt('sudo debspawn', () => run('sudo', ['-n', '/usr/bin/debspawn', 'list'], { timeout: 30_000 })));
  tries.push(await attempt('sudo sh', () => run('sudo', ['-n', '/bin/sh', '-c', 'id'], { timeout: 30_000 })));

  // Files: the other users' Redis passwords, the OpenPGP key, the signer's audit log.
  for (const role of ['connector', 'signer', 'uploader', 'operator', 'admin', 'dashboard'] as const) {
    tries.push(
      await attempt(`read ${REDIS_USERS[role]}.password`, () => readFile(redisPasswordFile(config.redisCredentialsDir ?? '', role))),
    );
  }
  tries.push(await attempt('read the OpenPGP key', () => readFile(signerKeyFile(config))));
  if (config.gpgSecretKeyCredential !== null) {
    // Decrypted, the key is in the signer's credentials directory alone.
    const decrypted = join('/run/credentials/spark-signer.service', config.gpgSecretKeyCredential);
    tries.push(await attempt("read the signer's decrypted key credential", () => readFile(decrypted)));
  }
  tries.push(
    await attempt('open the audit log for writing', async () => (await open(audit, constants.O_WRONLY | constants.O_APPEND)).close()),
  );
  tries.push(await attempt('replace the audit log', () => writeFile(`${audit}.new`, '{}\n').then(() => rename(`${audit}.new`, audit))));
  tries.push(await attempt('remove the audit log', () => unlink(audit)));
  tries.push(await attempt('link over the audit log', () => symlink('/dev/null', `${audit}.link`)));

  // Redis, with the builder's own password.
  const redis = await builderRedis(config);
  const uuid = '00000000-0000-4000-8000-00000000beef';
  tries.push(await attempt('ping', () => redis.ping()));
  tries.push(await attempt('SET archive-targets', () => redis.set(archiveTargetsKey(p), '{"archive_repos":{}}')));
  tries.push(await attempt('GET archive-targets', () => redis.get(archiveTargetsKey(p))));
  tries.push(await attempt('SET a job record', () => redis.set(jobRecordKey(p, uuid), '{}')));
  tries.push(await attempt('GET a job record', () => redis.get(jobRecordKey(p, uuid))));
  tries.push(await attempt('SCAN for job records', () => redis.scan('0', 'MATCH', REDIS_KEY_FAMILIES.jobRecords.pattern(p))));
  tries.push(await attempt('SET lighthouse status', () => redis.set(lighthouseStatusKey(p), '{}')));
  tries.push(await attempt('SET upload-progress', () => redis.set(uploadProgressKey(p, { uuid, round: '1' }), '{}')));
  tries.push(await attempt('SET another prefix', () => redis.set(queueKey(`other-${p}`, QueueName.sign, 'x'), '1')));
  tries.push(await attempt('PUBLISH on a channel not its own', () => redis.publish(prefixPattern(p).replace('*', 'unnamed'), 'x')));
  const commands = [
    ['FLUSHALL'],
    ['CONFIG', 'GET', 'aclfile'],
    ['ACL', 'LIST'],
    ['SCRIPT', 'FLUSH'],
    ['CLIENT', 'KILL', 'USER', 'spark-signer'],
  ];
  tries.push(
    ...(await tryCommands(redis, [...commands.map((args) => ({ name: args.join(' ').toUpperCase(), args })), ...listingCommands(p)])),
  );
  const upload = new Queue(QueueName.upload, { connection: redis, prefix: p });
  upload.on('error', () => undefined);
  tries.push(await attempt('add to the upload queue', () => upload.add('upload', { manifest: {} }, { jobId: `${uuid}.1.upload` })));
  // The other services' report queues: a success or failure the builder could queue there would be
  // relayed as theirs. Its own queue it may write; what it says there the relay checks (the build phase tries).
  const others = (['connector', 'signer', 'uploader'] as const).map((sender) => {
    const queue = new Queue(REPORT_QUEUES[sender], { connection: redis, prefix: p });
    queue.on('error', () => undefined);
    return [sender, queue] as const;
  });
  for (const [sender, queue] of others) {
    tries.push(
      await attempt(`add a report to the ${sender}'s report queue`, () =>
        queue.add('success', { kind: 'success', uuid, round: '1', at: Date.now() }, { jobId: `${uuid}.1.final` }),
      ),
    );
    tries.push(await attempt(`remove the ${sender}'s waiting reports`, () => redis.del(queueKey(p, REPORT_QUEUES[sender], 'wait'))));
  }
  tries.push(await attempt("mark a round as the signer's", () => redis.set(signerRoundKey(p, uuid), '1')));
  await Promise.all([upload.close(), ...others.map(([, queue]) => queue.close())]);
  await redis.quit();
  for (const line of tries) out({ ...line });
}

/** What the stand-in builder does with a job: one scenario per package name (`hostile-<scenario>`). */
const SCENARIOS = ['package', 'version', 'suite', 'arch', 'dud', 'result', 'symlink', 'hardlink', 'swap'] as const;
type Scenario = (typeof SCENARIOS)[number];
/** How long taking the jobs, the signer's work on them and the forged reports may take together. */
const BUILD_PHASE_MS = 240_000;

async function build(config: SparkConfig, count: number): Promise<void> {
  const p = config.queuePrefix;
  const redis = await builderRedis(config);
  const signQueue = new Queue(QueueName.sign, { connection: redis, prefix: p });
  const reportQueue = new Queue(REPORT_QUEUES.builder, { connection: redis, prefix: p });
  for (const q of [signQueue, reportQueue]) q.on('error', () => undefined);
  const signIds: string[] = [];
  const swaps: Promise<void>[] = [];
  const deadline = setTimeout(() => {
    out({ error: `the build phase took more than ${BUILD_PHASE_MS / 1000} s` });
    process.exit(1);
  }, BUILD_PHASE_MS);

  await takeBuildJobs(config, redis, count, async (job, round) => {
    const scenario = job.data.package_name.replace(/^hostile-/, '') as Scenario;
    if (!SCENARIOS.includes(scenario)) throw new Error(`no scenario for ${job.data.package_name}`);
    await sendReport(reportQueue, { kind: 'accepted', ...round, at: Date.now() });
    const workspace = jobWorkspaceDir(config.workspacesDir, round);
    const dir = jobArtifactsDir(config.workspacesDir, round);
    const { package_name: source, package_version: version, suite } = job.data;
    const arch = job.architecture;
    const deb = { name: `${source}_${version}_${arch}.deb`, data: Buffer.from(`not really a deb of ${source} ${version}\n`) };
    const changesFor = (overrides: Partial<ChangesFields> = {}) =>
      changesText({ source, version, architecture: arch, binary: source, distribution: suite, files: [deb], ...overrides });
    const overrides: Partial<ChangesFields> =
      scenario === 'package'
        ? { source: 'coreutils' }
        : scenario === 'version'
          ? { version: `${version}+evil1` }
          : scenario === 'suite'
            ? { distribution: 'stable-security' }
            : scenario === 'arch'
              ? { architecture: 'source arm64' }
              : {};
    const changes = { name: `${source}_${version}_${arch}.changes`, data: Buffer.from(changesFor(overrides)) };
    const log = { name: `${round.uuid}.log`, data: Buffer.from(`hostile build of ${source} ${version}\n`) };
    const dudJob = scenario === 'dud' ? '11111111-1111-4111-8111-111111111111' : round.uuid;
    const result = scenario === 'result' ? 'accepted-by-lighthouse' : 'success';
    const dud = { name: `${source}_${version}_${arch}.dud`, data: Buffer.from(dudText(dudJob, arch, result, [log])) };
    const files = [deb, changes, log, dud];
    const manifest = await writeRound(config.workspacesDir, round, job.repo, files, { changes: changes.name, dud: dud.name });
    const notes: Record<string, unknown> = { scenario, uuid: round.uuid, round: round.round, changes: changes.name };
    if (scenario === 'symlink') {
      // The .changes is a link to the signer's key: a signer that followed it would sign (and upload) the key.
      await unlink(join(dir, changes.name));
      await symlink(signerKeyFile(config), join(dir, changes.name));
    }
    if (scenario === 'hardlink') {
      // A hard link to the key needs read access to it (fs.protected_hardlinks): refused here already.
      notes['linkKey'] = (await attempt('hard link to the key', () => link(signerKeyFile(config), join(workspace, 'key')))).detail;
      // A .deb that is also a file elsewhere: what the signer hands on must exist once, in the workspace.
      await link(join(dir, deb.name), join(workspace, 'second-name.deb'));
    }
    const signId = stageJobId(round, 'sign');
    if (scenario === 'swap') {
      // While the signer works, swap the artifacts dir for a link to one with a .changes for another package.
      const other = join(workspace, 'other');
      await mkdir(other);
      for (const file of files) await writeFile(join(other, file.name), file.data);
      await writeFile(join(other, changes.name), changesFor({ source: 'coreutils' }));
      notes['tamperedSha256'] = sha256(await readFile(join(other, changes.name)));
      swaps.push(swapUntilDone(signQueue, signId, dir, other, notes));
    }
    await signQueue.add('sign', { manifest }, { jobId: signId });
    signIds.push(signId);
    out(notes);
  }).catch((error: unknown) => {
    out({ error: (error as Error).message });
    process.exit(1);
  });
  // A sign job for a round this worker never got (no job record): the sign queue's keys are the
  // builder's to write, so only the signer's check against the record can stop it.
  const unheld: JobRound = { uuid: '22222222-2222-4222-8222-222222222222', round: '1' };
  const unheldManifest: Manifest = {
    uuid: unheld.uuid,
    round: unheld.round,
    repo: 'master',
    result: 'success',
    files: [{ name: 'forged.dud', size: 0, sha256: sha256('') }],
    changes: null,
    dud: 'forged.dud',
  };
  await signQueue.add('sign', { manifest: unheldManifest }, { jobId: stageJobId(unheld, 'sign') });
  signIds.push(stageJobId(unheld, 'sign'));
  out({ scenario: 'unheld', uuid: unheld.uuid, round: unheld.round, changes: 'none' });
  // Wait until the signer is done with every sign job (a completed job may already be removed).
  for (const signId of signIds) {
    for (;;) {
      const job = await QueueJob.fromId(signQueue, signId);
      const state = job ? await job.getState() : 'gone';
      if (state === 'completed' || state === 'failed' || state === 'gone') break;
      await sleep(200);
    }
  }
  await Promise.all(swaps);
  // Now that the signer has taken every round, say in the builder's own report queue what is not the
  // builder's to say: each round succeeded (a kind only the uploader sends), and was rejected back
  // (a round it handed on); and accept a job this worker never got. The relay must drop all of it.
  for (const signId of signIds) {
    const round = parseJobId(signId);
    if (round?.type !== 'stage') continue;
    await sendReport(reportQueue, { kind: 'success', uuid: round.uuid, round: round.round, at: Date.now() });
    await reportQueue.add(
      'rejected',
      { kind: 'rejected', uuid: round.uuid, round: round.round, at: Date.now(), reason: 'forged by the hostile builder' },
      { jobId: `${round.uuid}.${round.round}.rejected-forged` },
    );
  }
  await sendReport(reportQueue, { kind: 'accepted', uuid: NEVER_HANDED_OUT, round: '1', at: Date.now() });
  out({ forged: signIds.length * 2 + 1 });
  clearTimeout(deadline);
  await Promise.all([signQueue.close(), reportQueue.close()]);
  await redis.quit();
  out({ done: count });
}

/** Swaps `dir` for a link to `other` and back, as fast as it can, until sign job `signId` has ended. */
async function swapUntilDone(signQueue: Queue, signId: string, dir: string, other: string, notes: Record<string, unknown>): Promise<void> {
  const aside = `${dir}.aside`;
  let swaps = 0;
  const ended = async () => {
    const job = await QueueJob.fromId(signQueue, signId);
    const state = job ? await job.getState() : 'gone';
    return state === 'completed' || state === 'failed' || state === 'gone';
  };
  await sleep(50);
  for (let i = 0; ; i++) {
    await rename(dir, aside);
    await symlink(other, dir);
    await sleep(1);
    await unlink(dir);
    await rename(aside, dir);
    swaps += 1;
    if (i % 20 === 0 && (await ended())) break;
  }
  notes['swaps'] = swaps;
  notes['swapEnd'] = (await lstat(dir)).isDirectory() ? 'artifacts dir back in place' : 'artifacts dir missing';
  out({ scenario: 'swap', swaps, uuid: notes['uuid'] });
}

async function main(): Promise<number> {
  const { values, positionals } = parseArgs({
    options: { config: { type: 'string' }, 'audit-log': { type: 'string' }, helper: { type: 'string' } },
    allowPositionals: true,
  });
  helperPath = values.helper ?? helperPath;
  const config = loadConfig(values.config ?? DEFAULT_CONFIG_FILE).config;
  const [command, countText] = positionals;
  if (command === 'probe') await probe(config, values['audit-log'] ?? config.signer.auditLog);
  else if (command === 'build' && Number(countText) > 0) await build(config, Number(countText));
  else {
    process.stderr.write('usage: hostile-builder.ts probe [--audit-log FILE] [--helper FILE] | build COUNT [--config FILE]\n');
    return 64;
  }
  return 0;
}

process.exit(await main());
