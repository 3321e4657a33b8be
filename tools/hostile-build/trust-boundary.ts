/*
 * The attacks of npm run test:hostile that a compromised builder makes on the
 * rest of the trust boundary (docs/architecture.md, "Trust boundary"): as
 * spark-builder, with its Redis password and its filesystem rights, through
 * as-builder.ts. Each returns what happened, or throws saying what went wrong.
 */
import { execFile } from 'node:child_process';
import { readdir, readFile } from 'node:fs/promises';
import { basename, dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { Queue, QueueEvents } from 'bullmq';
import { jobArtifactsDir, QUEUE_NAMES, QueueName, REPORT_QUEUES, reportJobId, stageJobId, type JobRound } from '@spark/protocol';
import { readJobRecord, redisPasswordFile, type Redis } from '@spark/service';
import { startServiceProcess, waitFor } from '@spark/testing';
import { listingCommands } from '../src/hostile/compromised-builder.js';
import { FLOOD_UUID_PREFIX, floodReport, ORACLE_MARKERS, ROUND_SCENARIOS, type RoundScenario } from './hostile-content.js';
import { filesBelow, type Suite } from './suite.js';

const run = promisify(execFile);

/** A round the compromised builder handed the signer, and its `.deb`. */
interface HandedRound extends JobRound {
  deb: string;
}

/** The round of each scenario (hostile-content.ts). */
export type HandedRounds = ReadonlyMap<RoundScenario, HandedRound>;

/** One line of the signer's audit log (apps/signer audit-log.ts). */
interface AuditLine {
  event: 'signed' | 'refused';
  uuid: string;
  reason?: string;
}

async function withQueue<T>(admin: Redis, prefix: string, name: string, use: (queue: Queue) => Promise<T>): Promise<T> {
  const queue = new Queue(name, { connection: admin, prefix, skipMetasUpdate: true });
  queue.on('error', () => undefined);
  try {
    return await use(queue);
  } finally {
    await queue.close();
  }
}

/**
 * Stops the builder and holds the uploader (so that a signed round waits in
 * the `upload` queue), offers one job per scenario at Lighthouse, and lets
 * the compromised builder take them from the `build` queue — the connector
 * hands them out and records them as for any builder — and hand the signer
 * its rounds. Starts the builder again; the uploader stays stopped until
 * {@link swappedAfterSigning}.
 */
export async function handOutRounds(suite: Suite): Promise<HandedRounds> {
  const { chain } = suite;
  await chain.stop('uploader');
  await chain.stop('builder');
  try {
    for (const scenario of ROUND_SCENARIOS) chain.standIn.addJob(await chain.archive.packageJob({ name: scenario, version: '1.0' }));
    const lines = await suite.asBuilder(['rounds', String(ROUND_SCENARIOS.length)]);
    const rounds = new Map<RoundScenario, HandedRound>();
    for (const line of lines) {
      rounds.set(line['scenario'] as RoundScenario, { uuid: String(line['uuid']), round: String(line['round']), deb: String(line['deb']) });
    }
    const missing = ROUND_SCENARIOS.filter((scenario) => !rounds.has(scenario));
    if (missing.length > 0) throw new Error(`the compromised builder got no job for ${missing.join(', ')}: ${JSON.stringify(lines)}`);
    suite.say(`the compromised builder handed the signer ${rounds.size} rounds`);
    return rounds;
  } finally {
    chain.start('builder');
  }
}

function handed(rounds: HandedRounds, scenario: RoundScenario): HandedRound {
  const round = rounds.get(scenario);
  if (!round) throw new Error(`no round of ${scenario}`);
  return round;
}

async function auditLines(suite: Suite, uuid: string): Promise<AuditLine[]> {
  const text = await readFile(suite.chain.config.signer.auditLog, 'utf8').catch(() => '');
  return text
    .split('\n')
    .filter(Boolean)
    .map((line) => JSON.parse(line) as AuditLine)
    .filter((line) => line.uuid === uuid);
}

/** The receiver's copies of files named `names`. */
async function uploadedOf(suite: Suite, names: (name: string) => boolean): Promise<string[]> {
  return (await filesBelow(suite.chain.uploadsDir)).filter((file) => names(basename(file)));
}

/**
 * Checks that the signer refused `scenario`'s round for `reason`: the job
 * failed at Lighthouse, the refusal is in the audit log and in the signer's
 * failed report, nothing of it was signed or uploaded. Returns the reason.
 */
async function refusedBySigner(suite: Suite, rounds: HandedRounds, scenario: RoundScenario, reason: RegExp): Promise<string> {
  const round = handed(rounds, scenario);
  const end = await suite.ending(round.uuid, 120_000);
  if (end !== 'job-failed') throw new Error(`${scenario}: the job ended ${end}: ${suite.said(round.uuid).slice(-300)}`);
  const audit = await auditLines(suite, round.uuid);
  const refusal = audit.find((line) => line.event === 'refused');
  if (!refusal || !reason.test(refusal.reason ?? '')) throw new Error(`${scenario}: the audit log says ${JSON.stringify(audit)}`);
  if (audit.some((line) => line.event === 'signed')) throw new Error(`${scenario}: the signer signed: ${JSON.stringify(audit)}`);
  const report = await withQueue(suite.admin, suite.chain.config.queuePrefix, REPORT_QUEUES.signer, (queue) =>
    queue.getJob(reportJobId(round, { kind: 'final' })),
  );
  const reported = (report?.data as { kind?: string; reason?: string } | undefined) ?? {};
  if (reported.kind !== 'failed' || !reason.test(reported.reason ?? '')) {
    throw new Error(`${scenario}: the signer's report says ${JSON.stringify(reported)}`);
  }
  const uploaded = await uploadedOf(suite, (name) => name.startsWith(`${scenario}_`) || name.startsWith(round.uuid));
  if (uploaded.length > 0) throw new Error(`${scenario}: uploaded ${uploaded.join(', ')}`);
  return refusal.reason ?? '';
}

/** Every file of the worker's root and of the receiver that gpgv verifies as signed by the archive key, with the text signed. */
async function archiveSignatures(suite: Suite): Promise<{ file: string; text: string }[]> {
  const { chain } = suite;
  const found: { file: string; text: string }[] = [];
  for (const file of [...(await filesBelow(dirname(chain.config.workspacesDir))), ...(await filesBelow(chain.uploadsDir))]) {
    if (!(await readFile(file)).includes('-----BEGIN PGP SIGNED MESSAGE-----')) continue;
    const verified = await run('gpgv', ['--keyring', chain.key.keyring, '--output', '-', file]).catch(() => null);
    if (verified) found.push({ file, text: verified.stdout });
  }
  return found;
}

/** The signer as a signing oracle: a `.buildinfo` that is the text of another package's `.changes`, or of another job's `.dud`. */
export async function signingOracle(suite: Suite, rounds: HandedRounds): Promise<string> {
  const reasons: string[] = [];
  for (const scenario of ['oracle-changes', 'oracle-dud'] as const) {
    const reason = new RegExp(
      `${scenario}_1\\.0_amd64\\.buildinfo: has a Files field: it is a \\.changes, \\.dsc or \\.dud, not a \\.buildinfo`,
    );
    reasons.push(await refusedBySigner(suite, rounds, scenario, reason));
  }
  const signed = await archiveSignatures(suite);
  const oracle = signed.filter(({ text }) => ORACLE_MARKERS.some((marker) => text.includes(marker)));
  if (oracle.length > 0) throw new Error(`the archive key signed the foreign text: ${oracle.map(({ file }) => file).join(', ')}`);
  return (
    `both job-failed, refusal audited and in the failed report ("${reasons.join('"; "')}"); ` +
    `gpgv: ${signed.length} files signed by the archive key, none holds either text`
  );
}

/** A `.changes` of the job's source whose `Binary` names, or whose `Files` list, another source's package. */
export async function foreignBinaries(suite: Suite, rounds: HandedRounds): Promise<string> {
  const binary = await refusedBySigner(
    suite,
    rounds,
    'foreign-binary',
    /foreign-binary_1\.0_amd64\.changes: Binary names coreutils, which foreign-binary does not build \(its \.dsc lists foreign-binary\)/,
  );
  const file = await refusedBySigner(
    suite,
    rounds,
    'foreign-file',
    /coreutils_9\.9_amd64\.deb: is a package of coreutils, which foreign-file does not build \(its \.dsc lists foreign-file\)/,
  );
  return `both job-failed, audited, nothing signed or uploaded: "${binary}"; "${file}"`;
}

/**
 * The `.deb` of a signed round replaced while the round waits in the `upload`
 * queue: by a link to the uploader's Redis password file, or in place by
 * other bytes of its size. Starts the uploader again.
 */
export async function swappedAfterSigning(suite: Suite, rounds: HandedRounds): Promise<string> {
  const { chain } = suite;
  const password = redisPasswordFile(chain.config.redisCredentialsDir ?? '', 'uploader');
  const swaps = [
    {
      scenario: 'swap-link' as const,
      how: ['link', password],
      reason: /not what the signer signed: swap-link_1\.0_amd64\.deb: is a symbolic link/,
    },
    {
      scenario: 'swap-bytes' as const,
      how: ['bytes'],
      reason: /not what the signer signed: swap-bytes_1\.0_amd64\.deb: SHA-256 is [0-9a-f]{64}, .{1,80} says [0-9a-f]{64}/,
    },
  ];
  const signedBytes = new Map<string, Map<string, Buffer>>();
  const tried = new Map<string, Record<string, unknown>>();
  try {
    for (const { scenario, how } of swaps) {
      const round = handed(rounds, scenario);
      await waitFor(
        `${scenario} signed and waiting in the upload queue`,
        async () => {
          if (suite.endOf(round.uuid)) throw new Error(`${scenario} ended before it was signed: ${suite.said(round.uuid).slice(-300)}`);
          const job = await withQueue(suite.admin, chain.config.queuePrefix, QueueName.upload, (q) =>
            q.getJob(stageJobId(round, 'upload')),
          );
          return job ?? undefined;
        },
        { timeoutMs: 120_000, intervalMs: 200 },
      );
      const dir = jobArtifactsDir(chain.config.workspacesDir, round);
      signedBytes.set(
        scenario,
        new Map(await Promise.all((await readdir(dir)).map(async (name) => [name, await readFile(join(dir, name))] as const))),
      );
      const [line] = await suite.asBuilder(['swap', round.uuid, round.round, round.deb, ...how]);
      tried.set(scenario, line ?? {});
    }
  } finally {
    chain.start('uploader');
  }
  const outcomes: string[] = [];
  for (const { scenario, reason } of swaps) {
    const round = handed(rounds, scenario);
    const swap = tried.get(scenario) ?? {};
    const end = await suite.ending(round.uuid, 120_000);
    const signed = signedBytes.get(scenario) ?? new Map<string, Buffer>();
    const uploaded = await uploadedOf(suite, (name) => signed.has(name));
    for (const file of uploaded) {
      if (!(await readFile(file)).equals(signed.get(basename(file)) ?? Buffer.alloc(0))) {
        throw new Error(`${scenario}: the receiver holds ${basename(file)} other than it was signed`);
      }
    }
    if (swap['outcome'] === 'refused') {
      // The builder's rights did not let it: the signed round goes through as signed.
      if (end !== 'job-success') throw new Error(`${scenario}: the swap was refused (${String(swap['detail'])}), yet the job ended ${end}`);
      outcomes.push(`${scenario}: the builder could not (${String(swap['detail'])}); uploaded as signed`);
      continue;
    }
    const why = reason.exec(suite.said(round.uuid))?.[0];
    if (end !== 'job-failed' || !why)
      throw new Error(`${scenario}: ended ${end} without the reason: ${suite.said(round.uuid).slice(-400)}`);
    const controls = uploaded.filter((file) => /\.(changes|dud)$/.test(file));
    if (controls.length > 0) throw new Error(`${scenario}: ${controls.map((file) => basename(file)).join(', ')} reached the receiver`);
    outcomes.push(
      `${String(swap['name'])}: job-failed, "${why}"; the receiver got ${uploaded.length} file(s), each as signed, no control file`,
    );
  }
  return outcomes.join('; ');
}

/** A snapshot of every queue's job counts and paused state, as spark-admin sees them. */
async function queueSnapshot(suite: Suite): Promise<string> {
  const parts: string[] = [];
  for (const name of QUEUE_NAMES) {
    await withQueue(suite.admin, suite.chain.config.queuePrefix, name, async (queue) => {
      parts.push(`${name} ${JSON.stringify(await queue.getJobCounts())}${(await queue.isPaused()) ? ' paused' : ''}`);
    });
  }
  return parts.join('; ');
}

/** `spark dashboard --read-write`, started by root, and its API called by the builder without the token. */
export async function dashboardWithoutToken(suite: Suite): Promise<string> {
  const cli = fileURLToPath(import.meta.resolve('@spark/cli/main'));
  const dashboard = startServiceProcess(cli, ['dashboard', '--read-write', '--port', '0', '--config', suite.configFile]);
  try {
    const started = await dashboard.waitForLine('the dashboard serving', (line) => typeof line['url'] === 'string', 60_000);
    // The rounds before may still be finishing (a report completing after Lighthouse heard it): wait until nothing moves.
    let last = '';
    const before = await waitFor(
      'the queues settled',
      async () => {
        const now = await queueSnapshot(suite);
        const settled = now === last;
        last = now;
        return settled ? now : undefined;
      },
      { timeoutMs: 60_000, intervalMs: 1_000 },
    );
    const tries = await suite.asBuilder(['dashboard', String(started['url']), String(dashboard.pid)]);
    const after = await queueSnapshot(suite);
    const http = tries.filter((t) => /^(GET|POST|PUT) /.test(String(t['name'])));
    const proc = tries.filter((t) => String(t['name']).includes('/proc/'));
    const wrong = [
      ...http.filter((t) => t['outcome'] !== 'refused' || !/^401 spark dashboard: a valid token is required/.test(String(t['detail']))),
      ...proc.filter((t) => t['outcome'] !== 'refused' || !/EACCES/.test(String(t['detail']))),
    ];
    if (http.length === 0 || proc.length === 0 || wrong.length > 0)
      throw new Error(`not refused as expected: ${JSON.stringify(wrong.length > 0 ? wrong : tries)}`);
    if (after !== before) throw new Error(`the queues changed:\n  before: ${before}\n  after:  ${after}`);
    return `${http.length} API calls (read, add, pause, retry, clean) with no token, a wrong Bearer, a guessed cookie, a wrong ?token=: each 401; its /proc environ and mem: EACCES; no queue changed`;
  } finally {
    await dashboard.stop();
  }
}

/** The commands that list, count or watch keys and clients, with the builder's credentials. */
export async function redisListing(suite: Suite): Promise<string> {
  const tries = await suite.asBuilder(['listing']);
  const names = listingCommands(suite.chain.config.queuePrefix).map(({ name }) => name);
  const wrong = names.filter((name) => {
    const tried = tries.find((t) => t['name'] === name);
    return tried?.['outcome'] !== 'refused' || !/NOPERM/.test(String(tried['detail']));
  });
  if (wrong.length > 0) throw new Error(`not refused with NOPERM: ${wrong.join(', ')}: ${JSON.stringify(tries)}`);
  const logged = (await suite.chain.refusedByRedis()).filter((line) => line.startsWith('spark-builder: command '));
  const unlogged = names.filter((name) => !logged.some((line) => line.includes(` ${(name.split(' ')[0] ?? '').toLowerCase()}`)));
  if (unlogged.length > 0) throw new Error(`Redis's ACL LOG has no refusal of spark-builder for ${unlogged.join(', ')}`);
  return `each NOPERM, each in Redis's ACL LOG: ${names.join(', ')}`;
}

/**
 * What becomes of the flood's reports from now on, as BullMQ's event stream of
 * `report-builder` tells it (read as spark-admin): each one's return value
 * when the relay finished it (`dropped: …`), or its failure. The event
 * stream, not the completed set: reports queued with BullMQ's keep-1000
 * (every honest one) trim that set of all but the newest 1000.
 */
async function watchFloodOutcomes(suite: Suite): Promise<{ outcomes: Map<string, number>; close: () => Promise<void> }> {
  const outcomes = new Map<string, number>();
  const count = (outcome: string) => outcomes.set(outcome, (outcomes.get(outcome) ?? 0) + 1);
  const connection = suite.admin.duplicate();
  const events = new QueueEvents(REPORT_QUEUES.builder, { connection, prefix: suite.chain.config.queuePrefix });
  events.on('error', () => undefined);
  events.on('completed', ({ jobId, returnvalue }) => {
    if (jobId.startsWith(FLOOD_UUID_PREFIX)) count(String(returnvalue));
  });
  events.on('failed', ({ jobId, failedReason }) => {
    if (jobId.startsWith(FLOOD_UUID_PREFIX)) count(`failed: ${failedReason}`);
  });
  await events.waitUntilReady();
  return {
    outcomes,
    close: async () => {
      await events.close();
      connection.disconnect();
    },
  };
}

/**
 * The builder floods its report queue with `count` bogus reports, then an
 * honest job runs through behind them: its builder's `accepted` is queued
 * after the flood, and the uploader's `job-success` must still reach
 * Lighthouse — after the job's `job-accepted`, while flood reports are still
 * queued — for the relay holds a report only for the earlier senders'
 * `accepted` and end of its own round (pulled to the head of their queue).
 * The relay must drop every flood report, none reaching Lighthouse.
 *
 * The suite arranges the timing, so that the honest round's reports are all
 * queued before the relay sees any: the relay (the connector) stops once the
 * job is handed out (the `build` queue paused until then, so the builder
 * starts it only after the flood), and the uploader holds the round until the
 * signer has handed it on.
 */
export async function reportFlood(suite: Suite, count: number): Promise<string> {
  const { chain, admin } = suite;
  const prefix = chain.config.queuePrefix;
  const pending = () =>
    withQueue(admin, prefix, REPORT_QUEUES.builder, (queue) => queue.getJobCountByTypes('waiting', 'prioritized', 'active', 'delayed'));
  const onBuild = <T>(use: (queue: Queue) => Promise<T>) => withQueue(admin, prefix, QueueName.build, use);
  let logged = 0;
  let counted = 0;
  const stopWatching = suite.onLog((service, line) => {
    if (service !== 'connector') return;
    if (line.includes(`"jobId":"${FLOOD_UUID_PREFIX}`) && line.includes('"msg":"dropping ')) logged += 1;
    const more = /"msg":"dropped (\d+) more reports from the builder's report queue/.exec(line);
    if (more) counted += Number(more[1]);
  });
  const problems: string[] = [];
  let outcomes = new Map<string, number>();
  let closeWatch = () => Promise.resolve();
  try {
    let uuid = '';
    let round: JobRound = { uuid: '', round: '' };
    await chain.stop('uploader');
    await onBuild((queue) => queue.pause());
    try {
      uuid = await suite.packageJob({ name: 'flood-honest', version: '1.0' });
      round = await waitFor(
        'the honest job handed out into the paused build queue',
        async () => {
          const record = await readJobRecord(admin, prefix, uuid);
          return record && (await onBuild((queue) => queue.getJob(stageJobId(record, 'build')))) ? record : undefined;
        },
        { timeoutMs: 120_000, intervalMs: 200 },
      );
      await chain.stop('connector');
      await suite.asBuilder(['flood', String(count)], 300_000);
    } finally {
      await onBuild((queue) => queue.resume());
    }
    await waitFor(
      'the honest job built, signed and waiting for the uploader',
      async () => (await withQueue(admin, prefix, QueueName.upload, (queue) => queue.getJob(stageJobId(round, 'upload')))) ?? undefined,
      { timeoutMs: 900_000, intervalMs: 500 },
    );
    chain.start('uploader');
    await waitFor(
      "the uploader's report of the honest job queued",
      async () =>
        (await withQueue(admin, prefix, REPORT_QUEUES.uploader, (queue) => queue.getJob(reportJobId(round, { kind: 'final' })))) ??
        undefined,
      { timeoutMs: 120_000, intervalMs: 200 },
    );
    const before = await pending();
    const watched = await watchFloodOutcomes(suite);
    closeWatch = watched.close;
    outcomes = watched.outcomes;
    suite.say(`the builder queued ${count} bogus reports before the honest job's; starting the relay (the connector)`);
    chain.start('connector');
    // The flood's last report: while it waits, flood reports are still queued ahead of nothing but each other.
    const lastFlood = floodReport(count - 1).opts.jobId;
    const { end, left, last } = await waitFor(
      'the honest job ending at Lighthouse',
      async () => {
        const ended = suite.endOf(uuid);
        if (!ended) return undefined;
        const state = await withQueue(admin, prefix, REPORT_QUEUES.builder, (queue) => queue.getJobState(lastFlood));
        return { end: ended, left: await pending(), last: state };
      },
      { timeoutMs: 900_000, intervalMs: 100 },
    );
    const heardOfJob = suite.requestsOf(uuid).map((request) => String(request.request));
    if (end !== 'job-success' || heardOfJob[0] !== 'job-accepted')
      problems.push(`Lighthouse heard ${heardOfJob.join(', ')} about the honest job`);
    if (last !== 'waiting') {
      problems.push(
        `job-success reached Lighthouse only once the flood had drained (its last report ${last}): the ${count} flood reports held the uploader's report`,
      );
    }
    await waitFor('the flood drained', async () => ((await pending()) === 0 ? true : undefined), { timeoutMs: 900_000, intervalMs: 1_000 });
    const finished = () => [...outcomes.values()].reduce((sum, n) => sum + n, 0);
    // The last events may still be on their way.
    await waitFor('every flood report finished', () => Promise.resolve(finished() >= count ? true : undefined), {
      timeoutMs: 30_000,
      intervalMs: 200,
    }).catch(() => undefined);
    const dropped = [...outcomes].filter(([outcome]) => outcome.startsWith('dropped: ')).reduce((sum, [, n]) => sum + n, 0);
    if (dropped !== count) problems.push(`of the ${count} flood reports: ${JSON.stringify(Object.fromEntries(outcomes))}`);
    const heard = chain.lighthouseRequests().filter((request) => String(request['uuid']).startsWith(FLOOD_UUID_PREFIX));
    if (heard.length > 0) problems.push(`Lighthouse heard ${heard.length} requests about flood jobs, e.g. ${JSON.stringify(heard[0])}`);
    const changes = (await filesBelow(chain.uploadsDir)).find((file) => /flood-honest_1\.0_amd64\.changes$/.test(file));
    if (!changes) problems.push('no flood-honest_1.0_amd64.changes uploaded');
    else await run('gpgv', ['--keyring', chain.key.keyring, changes]);
    if (problems.length > 0) throw new Error(problems.join('; '));
    const why = [...outcomes].map(([outcome, n]) => `${n}× ${outcome}`).join(', ');
    return (
      `job-accepted, then job-success at Lighthouse with the flood still queued (${left} reports in report-builder, of ${before} when the relay started); ` +
      `all ${count} dropped (${why}; the connector logged ${logged} one by one and counted ${counted} more so far); ` +
      'none reached Lighthouse; the honest .changes verifies'
    );
  } finally {
    stopWatching();
    await closeWatch();
    chain.start('connector', 'uploader');
  }
}
