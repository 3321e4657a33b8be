import { execFile } from 'node:child_process';
import { createHash } from 'node:crypto';
import { copyFile, mkdir, readFile, symlink, writeFile } from 'node:fs/promises';
import { basename, join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { fileURLToPath } from 'node:url';
import { Queue } from 'bullmq';
import { Redis } from 'ioredis';
import { curveKeyPair } from 'zeromq';
import { formatCurveKeyFile } from '@spark/keys';
import { jobArtifactsDir, jobRecordKey, QueueName, stageJobId, type NewJobRecord } from '@spark/protocol';
import type { StandInJob } from '@spark/testing';
import {
  chaosChain,
  emptyResult,
  retireWhenRejected,
  type ChaosChain,
  type ChaosJob,
  type Random,
  type Scenario,
  type ScenarioResult,
} from '../harness.js';
import { waitFor } from '@spark/testing';

const REPO = fileURLToPath(new URL('../../../', import.meta.url));

/** How a hostile case must end. */
type Expectation =
  /** Lighthouse gets `job-rejected` for this uuid, and a log line of the service names the reason. */
  | { rejects: string; log: RegExp }
  /** Nothing reaches Lighthouse; a log line says what was wrong; `afterwards` runs before the liveness check. */
  | { log: RegExp; service: 'connector' | 'signer' | 'uploader'; afterwards?: () => Promise<void> }
  /** Lighthouse gets `job-failed` for this uuid from the signer, nothing was signed. */
  | { fails: string; log: RegExp }
  /** A real job goes through in spite of Lighthouse's hostile answers to its reports (checked with the others at the end). */
  | { completes: ChaosJob; log: RegExp };

interface Case {
  name: string;
  /** Sends the hostile input; returns what must follow. */
  send(): Promise<Expectation>;
}

/** The round of the hostile sign and upload jobs put straight on their queues (as a builder would name it). */
const HOSTILE_ROUND = '1764405000000';

function uuidFrom(random: Random): string {
  const hex = Array.from({ length: 32 }, () => random.int(0, 15).toString(16)).join('');
  return `${hex.slice(0, 8)}-${hex.slice(8, 12)}-4${hex.slice(13, 16)}-a${hex.slice(17, 20)}-${hex.slice(20, 32)}`;
}

const sha256 = (data: Buffer | string) => createHash('sha256').update(data).digest('hex');

/**
 * Scenario 5: hostile input at every boundary — Lighthouse replies to the
 * connector, `.dsc` files to the builder, manifests to the signer and the
 * uploader, config files and keys to the services. Each case must end with a
 * clear error (a log line or report naming the problem) and the service still
 * running; a normal job at the end must still go through the whole chain.
 */
export const hostileInputScenario: Scenario = {
  name: 'hostile-input',
  timeoutMs: 240_000,
  async run(random, say) {
    const result = emptyResult();
    const chaos = await chaosChain();
    const redis = new Redis(chaos.chain.redis.url, { maxRetriesPerRequest: 3 });
    const prefix = chaos.chain.config.queuePrefix;
    const signQueue = new Queue(QueueName.sign, { connection: redis, prefix });
    const uploadQueue = new Queue(QueueName.upload, { connection: redis, prefix });
    try {
      const [template] = await chaos.submit(1, 'hostile');
      if (!template) throw new Error('no template job');
      chaos.chain.start();
      await chaos.waitForEnd([template], 60_000);
      const cases = [
        ...lighthouseReplyCases(chaos, template.job, random),
        ...reportReplyCases(chaos),
        ...archiveInfoCases(chaos),
        ...sourceCases(chaos, template.job, random),
        ...signerCases(chaos, signQueue, random),
        ...uploaderCases(chaos, uploadQueue, random),
      ];
      let passed = 0;
      const completed: ChaosJob[] = [];
      for (const hostile of cases) {
        const problem = await runCase(chaos, hostile, completed);
        if (problem) result.problems.push(`${hostile.name}: ${problem}`);
        else passed += 1;
      }
      const outside = await configCases(chaos, random);
      for (const [name, problem] of outside) {
        if (problem) result.problems.push(`${name}: ${problem}`);
        else passed += 1;
      }
      const total = cases.length + outside.length;
      say(`${passed} of ${total} hostile cases ended with a clear error and a running service`);
      result.notes.push(`${total} hostile cases`);
      const [after] = await chaos.submit(1, 'after-hostile');
      if (!after) throw new Error('no final job');
      await chaos.waitForEnd([after], 60_000);
      const verified = emptyResult();
      await chaos.verify([template, ...completed, after], 'job-success', verified, { sign: signerCaseCount, upload: uploaderCaseCount });
      Object.assign(result, { jobs: total, files: verified.files, duplicates: verified.duplicates, lost: verified.lost });
      result.problems.push(...verified.problems);
    } finally {
      await signQueue.close();
      await uploadQueue.close();
      redis.disconnect();
      await chaos.close();
    }
    return result satisfies ScenarioResult;
  },
};

async function runCase(chaos: ChaosChain, hostile: Case, completed: ChaosJob[]): Promise<string | null> {
  const logsBefore = chaos.logs.length;
  let expectation: Expectation;
  try {
    expectation = await hostile.send();
  } catch (error) {
    return `could not send it: ${(error as Error).message}`;
  }
  const newLogs = () => chaos.logs.slice(logsBefore);
  try {
    if ('rejects' in expectation) {
      await retireWhenRejected(chaos, expectation.rejects, 20_000);
      await waitFor(
        `a log line matching ${expectation.log}`,
        () => newLogs().some((line) => line.includes(expectation.rejects) && expectation.log.test(line)),
        { timeoutMs: 5_000 },
      );
    } else if ('completes' in expectation) {
      completed.push(expectation.completes);
      await chaos.waitForEnd([expectation.completes], 30_000);
      await waitFor(`a log line matching ${expectation.log}`, () => newLogs().some((line) => expectation.log.test(line)), {
        timeoutMs: 5_000,
      });
    } else if ('fails' in expectation) {
      await waitFor(
        'job-failed at Lighthouse',
        () => chaos.requestsOf(expectation.fails).some((request) => request.request === 'job-failed'),
        { timeoutMs: 20_000 },
      );
      await waitFor(`a log line matching ${expectation.log}`, () => newLogs().some((line) => expectation.log.test(line)), {
        timeoutMs: 5_000,
      });
      if (chaos.requestsOf(expectation.fails).some((request) => request.request === 'job-success')) return 'reported success';
    } else {
      await waitFor(
        `a ${expectation.service} log line matching ${expectation.log}`,
        () => newLogs().some((line) => line.startsWith(`${expectation.service}: `) && expectation.log.test(line)),
        { timeoutMs: 20_000 },
      );
      await expectation.afterwards?.();
    }
  } catch (error) {
    return `${(error as Error).message}\n${newLogs().slice(-8).join('\n')}`;
  }
  const died = chaos.ensureRunning();
  return died.length > 0 ? `services died: ${died.join(', ')}` : null;
}

/** Stands for a deeply nested value in a frame (JSON.stringify cannot make one). */
const DEEP = '@@deeply-nested@@';
const deep = (depth: number) => '['.repeat(depth) + ']'.repeat(depth);

/** The connector restarted and its first `archive-info` answered with something hostile: it says so and keeps running. */
function archiveInfoCases(chaos: ChaosChain): Case[] {
  const answered = (name: string, frame: string, log: RegExp): Case => ({
    name: `Lighthouse answers archive-info with ${name}`,
    async send() {
      await chaos.chain.stop('connector');
      chaos.chain.standIn.replyNext('archive-info', frame);
      chaos.chain.start('connector');
      return {
        log,
        service: 'connector',
        async afterwards() {
          await sleep(1_500);
          if (!chaos.chain.running('connector')) return;
          // A fresh start, so the next cases find the upload targets stored.
          await chaos.chain.stop('connector');
          chaos.chain.start('connector');
        },
      };
    },
  });
  const target = { upload_fqdn: '127.0.0.1:1/_upload', upload_method: 'http' };
  return [
    answered('not JSON', 'no', /archive-info.*(unreadable|not JSON)/),
    answered('2 MiB of JSON', JSON.stringify({ padding: 'x'.repeat(2 * 1024 * 1024) }), /archive-info.*exceeds the/),
    answered('an error', '{"error": "archive on fire"}', /Lighthouse refused archive-info: archive on fire/),
    answered(
      'a repository named "../master"',
      JSON.stringify({ archive_repos: { '../master': target } }),
      /archive-info: skipping repository/,
    ),
    answered(
      'an upload_fqdn with a space',
      JSON.stringify({ archive_repos: { master: { ...target, upload_fqdn: 'evil host/x' } } }),
      /archive-info: skipping repository/,
    ),
    answered(
      'an upload_method "ftp"',
      JSON.stringify({ archive_repos: { master: { ...target, upload_method: 'ftp' } } }),
      /archive-info: skipping repository/,
    ),
  ];
}

/** Real jobs whose reports Lighthouse answers with hostile replies: each report is sent once and the job goes on. */
function reportReplyCases(chaos: ChaosChain): Case[] {
  const answered = (request: string, name: string, frame: () => string, log: RegExp): Case => ({
    name: `Lighthouse answers ${request} with ${name}`,
    async send() {
      const [job] = await chaos.submit(1, 'reply');
      if (!job) throw new Error('no job');
      chaos.chain.standIn.replyNext(request, frame());
      return { completes: job, log };
    },
  });
  return [
    answered('job-accepted', 'a value nested 300000 deep', () => deep(300_000), /job-accepted: unexpected reply/),
    answered('job-accepted', 'not JSON', () => 'no', /job-accepted: Lighthouse sent an unreadable reply/),
    answered(
      'job-success',
      '2 MiB of JSON',
      () => JSON.stringify({ padding: 'x'.repeat(2 * 1024 * 1024) }),
      /job-success: Lighthouse sent an unreadable reply/,
    ),
    answered(
      'job-success',
      "Lighthouse's unknown-job error",
      () => '{"error": "Unable to find job with the requested ID."}',
      /Lighthouse refused job-success: Unable to find job with the requested ID\./,
    ),
    answered('job-status', 'an object nested 300000 deep', () => deep(300_000), /relayed job-status|job-status/),
  ];
}

/** Lighthouse's reply to the connector's `job` request replaced by something hostile. */
function lighthouseReplyCases(chaos: ChaosChain, template: StandInJob, random: Random): Case[] {
  const noUuid = /ignoring a job reply without a usable uuid|reply is not JSON|exceeds the/;
  const reply = (name: string, frame: () => string, log: RegExp = noUuid): Case => ({
    name: `Lighthouse job reply: ${name}`,
    async send() {
      const asked = chaos.chain.lighthouseRequests().filter((request) => request.request === 'job').length;
      chaos.chain.standIn.replyNext('job', frame());
      // Served once the connector asks again; a further request proves it carried on.
      await waitFor(
        'the connector asking for jobs again',
        () => chaos.chain.lighthouseRequests().filter((request) => request.request === 'job').length >= asked + 2,
        { timeoutMs: 20_000 },
      );
      return { log, service: 'connector' };
    },
  });
  // A job the connector's schema refuses can never run on any worker: it is failed with its reason.
  // One that passes the schema but cannot be fetched is rejected back by the builder (another worker may).
  const job = (
    name: string,
    change: (job: Record<string, unknown>, data: Record<string, unknown>) => void,
    ending: 'fails' | 'rejects' = 'fails',
  ): Case => ({
    name: `Lighthouse job: ${name}`,
    send() {
      const uuid = uuidFrom(random);
      const data = { ...(template['data'] as Record<string, unknown>) };
      const hostile: Record<string, unknown> = { ...template, uuid, data };
      change(hostile, data);
      chaos.chain.standIn.replyNext('job', JSON.stringify(hostile).replace(`"${DEEP}"`, deep(200_000)));
      return Promise.resolve(
        ending === 'fails'
          ? { fails: uuid, log: /this worker cannot run the job: \S.*; reporting it failed to Lighthouse/ }
          : { rejects: uuid, log: /source refused: .*; rejecting it back to Lighthouse/ },
      );
    },
  });
  const valid = () => uuidFrom(random);
  return [
    reply('not JSON', () => 'this is not json'),
    reply('truncated JSON', () => '{"uuid": "'),
    reply('invalid UTF-8', () => '\ud800\udfff\ud800'),
    reply('a JSON array', () => '[]'),
    reply('a number', () => '42'),
    reply('a string', () => '"job"'),
    reply('true', () => 'true'),
    reply('an empty object', () => '{}'),
    reply('error of the wrong type', () => '{"error": 5}'),
    reply('an error', () => '{"error": "no jobs for you"}', /answered the job request with an error: no jobs for you/),
    reply('2 MiB of JSON', () => JSON.stringify({ padding: 'x'.repeat(2 * 1024 * 1024) }), /exceeds the \d+-byte limit/),
    reply('nested 300000 deep', () => deep(300_000)),
    reply('uuid of the wrong type', () => JSON.stringify({ ...template, uuid: 12345 })),
    reply('uuid "../../etc/passwd"', () => JSON.stringify({ ...template, uuid: '../../etc/passwd' })),
    reply('uuid with "/"', () => JSON.stringify({ ...template, uuid: `${valid().slice(0, 8)}/${valid().slice(9)}` })),
    reply('uuid with NUL', () => JSON.stringify({ ...template, uuid: `${valid()}\u0000` })),
    reply('uuid with a newline', () => JSON.stringify({ ...template, uuid: `${valid()}\n../x` })),
    reply('uuid of 100000 characters', () => JSON.stringify({ ...template, uuid: 'a'.repeat(100_000) })),
    job('unknown kind', (j) => (j['kind'] = 'evil-build')),
    job('kind of the wrong type', (j) => (j['kind'] = 7)),
    job('architecture "../amd64"', (j) => (j['architecture'] = '../amd64')),
    job('architecture with NUL', (j) => (j['architecture'] = 'amd64\u0000')),
    job('no repo', (j) => delete j['repo']),
    job('repo "../master"', (j) => (j['repo'] = '../master')),
    job('repo with "/"', (j) => (j['repo'] = 'master/evil')),
    job('no data', (j) => delete j['data']),
    job('data nested 200000 deep', (j) => (j['data'] = DEEP)),
    job('dsc_url not a URL', (_, d) => (d['dsc_url'] = 'not a url')),
    job('dsc_url file:///etc/passwd', (_, d) => (d['dsc_url'] = 'file:///etc/passwd'), 'rejects'),
    job('dsc_url with encoded ".."', (_, d) => (d['dsc_url'] = `${chaos.chain.archive.url}/..%2f..%2fetc%2fpasswd.dsc`), 'rejects'),
    job('dsc_url to a closed port', (_, d) => (d['dsc_url'] = 'http://127.0.0.1:9/hello_1.0.dsc'), 'rejects'),
    job('sha256sum not hex', (_, d) => (d['sha256sum'] = 'zz')),
    job('package_name with "/"', (_, d) => (d['package_name'] = 'hello/../../x')),
    job('package_version with a newline', (_, d) => (d['package_version'] = '1.0\nEvil: yes')),
    job('suite "../../bookworm"', (_, d) => (d['suite'] = '../../bookworm')),
    job('do_indep a string', (_, d) => (d['do_indep'] = 'yes')),
  ];
}

/** Jobs whose `.dsc` (served by the package archive) is hostile: the builder must refuse the source. */
function sourceCases(chaos: ChaosChain, template: StandInJob, random: Random): Case[] {
  const archiveDir = join(chaos.chain.dir, 'archive');
  const data = template['data'] as { dsc_url: string; sha256sum: string };
  const dscName = basename(data.dsc_url);
  const source = (
    name: string,
    make: (dsc: string, file: string) => { text: string | Buffer; extra?: [string, string | Buffer][]; sha256?: string },
    log: RegExp,
  ): Case => ({
    name: `hostile .dsc: ${name}`,
    async send() {
      const uuid = uuidFrom(random);
      const original = await readFile(join(archiveDir, dscName), 'utf8');
      const file = `hostile-${uuid.slice(0, 8)}_1.0.dsc`;
      const made = make(original, file);
      await writeFile(join(archiveDir, file), made.text);
      for (const [extraName, content] of made.extra ?? []) await writeFile(join(archiveDir, extraName), content);
      chaos.chain.standIn.addJob({
        ...template,
        uuid,
        data: {
          ...(template['data'] as object),
          dsc_url: `${chaos.chain.archive.url}/${file}`,
          sha256sum: made.sha256 ?? sha256(made.text),
        },
      });
      return { rejects: uuid, log };
    },
  });
  const files = (dsc: string, line: string) => dsc.replace(/^Checksums-Sha256:\n(?: .*\n)+/m, `Checksums-Sha256:\n ${line}\n`);
  const tarLine = (dsc: string) => /^Checksums-Sha256:\n (\S+) (\d+) (\S+)$/m.exec(dsc);
  const refused = /source refused/;
  return [
    source('checksum differs from the job', (dsc) => ({ text: dsc, sha256: '0'.repeat(64) }), /source refused: .*SHA-256 is/),
    source(
      'lists "../../../etc/passwd"',
      (dsc) => ({ text: files(dsc, `${'a'.repeat(64)} 10 ../../../etc/passwd`) }),
      /not a plain Debian file name/,
    ),
    source('lists "/etc/passwd"', (dsc) => ({ text: files(dsc, `${'a'.repeat(64)} 10 /etc/passwd`) }), /not a plain Debian file name/),
    source(
      'lists "sub/dir.tar.xz"',
      (dsc) => ({ text: files(dsc, `${'a'.repeat(64)} 10 sub/dir.tar.xz`) }),
      /not a plain Debian file name/,
    ),
    source('lists itself', (dsc, file) => ({ text: files(dsc, `${'a'.repeat(64)} 10 ${file}`) }), /not a plain Debian file name/),
    source(
      'tarball checksum wrong',
      (dsc) => {
        const match = tarLine(dsc);
        return { text: dsc.replace(match?.[1] ?? '', 'b'.repeat(64)) };
      },
      /source refused: .*SHA-256/,
    ),
    source(
      'tarball larger than listed',
      (dsc) => {
        const match = tarLine(dsc);
        const name = `big-${random.int(0, 1e9)}.tar.xz`;
        return {
          text: files(dsc, `${match?.[1] ?? ''} ${match?.[2] ?? ''} ${name}`),
          extra: [[name, Buffer.alloc(Number(match?.[2] ?? 0) + 4096)]],
        };
      },
      /source refused: .*larger than the expected/,
    ),
    source(
      'listed file missing (404)',
      (dsc) => ({ text: files(dsc, `${'c'.repeat(64)} 100 missing_1.0.tar.xz`) }),
      /source refused: .*HTTP 404/,
    ),
    source('no Checksums-Sha256', (dsc) => ({ text: dsc.replace(/^Checksums-Sha256:\n(?: .*\n)+/m, '') }), /lists no files/),
    source('no Source field', (dsc) => ({ text: dsc.replace(/^Source: .*\n/m, '') }), /lacks a Source or Version/),
    source('binary garbage', () => ({ text: Buffer.from(Array.from({ length: 4096 }, () => random.int(0, 255))) }), refused),
    source('larger than 1 MiB', (dsc) => ({ text: `${dsc}${'#'.repeat(1024 * 1024 + 10)}` }), /larger than the expected/),
    source('a NUL in a file name', (dsc) => ({ text: files(dsc, `${'a'.repeat(64)} 10 evil\u0000.tar.xz`) }), refused),
  ];
}

let signerCaseCount = 0;
let uploaderCaseCount = 0;

/** Sign jobs put straight on the `sign` queue with hostile manifests or workspaces. */
function signerCases(chaos: ChaosChain, queue: Queue, random: Random): Case[] {
  const workspaces = chaos.chain.config.workspacesDir;
  const entry = async (dir: string, name: string, content: string | Buffer) => {
    await writeFile(join(dir, name), content);
    const buffer = Buffer.from(content);
    return { name, size: buffer.length, sha256: sha256(buffer) };
  };
  const dudText = (uuid: string, listed: { name: string; size: number; sha256: string }[]) =>
    `Format: 1.8\nDate: Thu, 26 Nov 2026 00:00:00 +0000\nArchitecture: amd64\nX-Spark-Job: ${uuid}\nX-Spark-Result: success\nChecksums-Sha256:\n${listed.map((f) => ` ${f.sha256} ${f.size} ${f.name}`).join('\n')}\n`;
  const changesText = (listed: { name: string; size: number; sha256: string }[]) =>
    `Format: 1.8\nSource: hostile\nBinary: hostile\nArchitecture: amd64\nVersion: 1.0\nDistribution: bookworm\nMaintainer: Spark Tests <spark-tests@example.org>\nChanges:\n hostile\nChecksums-Sha256:\n${listed.map((f) => ` ${f.sha256} ${f.size} ${f.name}`).join('\n')}\nFiles:\n${listed.map((f) => ` ${'0'.repeat(32)} ${f.size} misc optional ${f.name}`).join('\n')}\n`;
  const manifestCase = (
    name: string,
    build: (uuid: string, dir: string) => Promise<unknown>,
    expect: 'fails' | 'silent',
    log: RegExp,
  ): Case => ({
    name: `signer: ${name}`,
    async send() {
      signerCaseCount += 1;
      const uuid = uuidFrom(random);
      const dir = jobArtifactsDir(workspaces, { uuid, round: HOSTILE_ROUND });
      await mkdir(dir, { recursive: true });
      const payload = await build(uuid, dir);
      // As if the connector had handed the job out: the signer signs nothing it has no record of.
      const record: NewJobRecord = {
        uuid,
        round: HOSTILE_ROUND,
        kind: 'package-build',
        architecture: 'amd64',
        repo: 'master',
        package: 'hostile',
        version: '1.0',
        suite: 'bookworm',
        doIndep: false,
        receivedAt: Number(HOSTILE_ROUND),
      };
      await (await queue.client).set(jobRecordKey(queue.opts.prefix ?? '', uuid), JSON.stringify(record));
      await queue.add('sign', payload, { jobId: stageJobId({ uuid, round: HOSTILE_ROUND }, 'sign') });
      return expect === 'fails' ? { fails: uuid, log } : { log, service: 'signer' };
    },
  });
  const withLog = async (uuid: string, dir: string) => entry(dir, `${uuid}.log`, 'build log\n');
  const manifestOf = (uuid: string, files: unknown[], changes: string | null) => ({
    manifest: { uuid, round: HOSTILE_ROUND, repo: 'master', result: 'success', files, changes, dud: `${uuid}.dud` },
  });
  const hostileName = (label: string, name: string): Case =>
    manifestCase(
      `file name ${label}`,
      async (uuid, dir) => {
        const log = await withLog(uuid, dir);
        const dud = await entry(dir, `${uuid}.dud`, dudText(uuid, [log]));
        return manifestOf(uuid, [log, dud, { name, size: 1, sha256: 'a'.repeat(64) }], null);
      },
      'fails',
      /invalid payload/,
    );
  return [
    manifestCase('payload not an object', () => Promise.resolve('just a string'), 'silent', /invalid payload/),
    manifestCase(
      'uuid "../../etc"',
      () => Promise.resolve({ manifest: { uuid: '../../etc', repo: 'master', result: 'success', files: [], changes: null, dud: 'x.dud' } }),
      'silent',
      /invalid payload/,
    ),
    hostileName('"../x.deb"', '../x.deb'),
    hostileName('with "/"', 'a/b.deb'),
    hostileName('with NUL', 'a\u0000.deb'),
    hostileName('with a newline', 'a\nb.deb'),
    hostileName('".."', '..'),
    manifestCase(
      '.changes names a file the manifest lacks',
      async (uuid, dir) => {
        const log = await withLog(uuid, dir);
        const deb = await entry(dir, 'hostile_1.0_amd64.deb', 'not really a deb');
        const changes = await entry(dir, 'hostile_1.0_amd64.changes', changesText([deb]));
        const dud = await entry(dir, `${uuid}.dud`, dudText(uuid, [log]));
        return manifestOf(uuid, [log, changes, dud], changes.name);
      },
      'fails',
      /refused to sign/,
    ),
    manifestCase(
      'a file whose SHA-256 differs from the manifest',
      async (uuid, dir) => {
        const log = await withLog(uuid, dir);
        const dud = await entry(dir, `${uuid}.dud`, dudText(uuid, [log]));
        return manifestOf(uuid, [{ ...log, sha256: 'd'.repeat(64) }, dud], null);
      },
      'fails',
      /SHA-256 is/,
    ),
    manifestCase(
      'a file whose size differs from the manifest',
      async (uuid, dir) => {
        const log = await withLog(uuid, dir);
        const dud = await entry(dir, `${uuid}.dud`, dudText(uuid, [log]));
        return manifestOf(uuid, [{ ...log, size: log.size + 1 }, dud], null);
      },
      'fails',
      /bytes, the manifest says/,
    ),
    manifestCase(
      'an artifact that is a symlink to /etc/passwd',
      async (uuid, dir) => {
        const passwd = await readFile('/etc/passwd');
        await symlink('/etc/passwd', join(dir, `${uuid}.log`));
        const log = { name: `${uuid}.log`, size: passwd.length, sha256: sha256(passwd) };
        const dud = await entry(dir, `${uuid}.dud`, dudText(uuid, [log]));
        return manifestOf(uuid, [log, dud], null);
      },
      'fails',
      /symbolic link/,
    ),
    manifestCase(
      'the .dud is missing from the workspace',
      async (uuid, dir) => {
        const log = await withLog(uuid, dir);
        return manifestOf(uuid, [log, { name: `${uuid}.dud`, size: 10, sha256: 'e'.repeat(64) }], null);
      },
      'fails',
      /missing from the job workspace/,
    ),
    manifestCase(
      'the .dud lists a checksum that differs from the file',
      async (uuid, dir) => {
        const log = await withLog(uuid, dir);
        const dud = await entry(dir, `${uuid}.dud`, dudText(uuid, [{ ...log, sha256: 'f'.repeat(64) }]));
        return manifestOf(uuid, [log, dud], null);
      },
      'fails',
      /refused to sign/,
    ),
  ];
}

/** Upload jobs put straight on the `upload` queue with hostile manifests. */
function uploaderCases(chaos: ChaosChain, queue: Queue, random: Random): Case[] {
  // `failsInQueue`: the payload is refused (a failed queue job); otherwise the round is reported failed and the job completes.
  const upload = (name: string, payload: (uuid: string) => unknown, log: RegExp, failsInQueue = true): Case => ({
    name: `uploader: ${name}`,
    async send() {
      if (failsInQueue) uploaderCaseCount += 1;
      const uuid = uuidFrom(random);
      await queue.add('upload', payload(uuid), { jobId: stageJobId({ uuid, round: HOSTILE_ROUND }, 'upload') });
      return { log, service: 'uploader' };
    },
  });
  const manifest = (uuid: string, files: unknown[], extra: Record<string, unknown> = {}) => ({
    manifest: { uuid, round: HOSTILE_ROUND, repo: 'master', result: 'success', files, changes: null, dud: `${uuid}.dud`, ...extra },
  });
  const dud = (uuid: string) => ({ name: `${uuid}.dud`, size: 10, sha256: 'a'.repeat(64) });
  return [
    upload('payload not an object', () => 42, /invalid payload/),
    upload('uuid "../../"', () => manifest('../../', [dud('x')]), /invalid payload/),
    upload('file name ".."', (uuid) => manifest(uuid, [dud(uuid), { name: '..', size: 1, sha256: 'a'.repeat(64) }]), /invalid payload/),
    upload('repo "../master"', (uuid) => manifest(uuid, [dud(uuid)], { repo: '../master' }), /invalid payload/),
    upload(
      'files missing from the workspace',
      (uuid) => manifest(uuid, [dud(uuid)]),
      /the job's files are not what the signer signed: the job workspace is missing/,
      false,
    ),
  ];
}

/** Config files and keys: each service must refuse them with a clear message, or keep running and say what is wrong. */
async function configCases(chaos: ChaosChain, random: Random): Promise<[string, string | null][]> {
  const { chain } = chaos;
  const text = await readFile(chain.configFile, 'utf8');
  const dir = join(chain.dir, 'hostile-config');
  await mkdir(dir, { recursive: true });
  const outcomes: [string, string | null][] = [];
  const service = (name: string, config: string, waitFor?: RegExp) =>
    new Promise<{ code: number | null; output: string }>((resolve) => {
      const entry = join(REPO, 'apps', name, 'src', 'main.ts');
      let output = '';
      const child = execFile(
        process.execPath,
        ['--conditions=@spark/source', '--import', 'tsx', entry, '--config', config],
        { timeout: 30_000 },
        (error) => resolve({ code: error ? ((error as { code?: number }).code ?? null) : 0, output }),
      );
      const watch = (chunk: Buffer | string) => {
        output += chunk.toString();
        if (waitFor?.test(output)) child.kill('SIGTERM');
      };
      child.stdout?.on('data', watch);
      child.stderr?.on('data', watch);
    });
  const exitsWith = async (name: string, service_: string, config: string, message: RegExp) => {
    const { code, output } = await service(service_, config);
    outcomes.push([
      name,
      // 78: EX_CONFIG, every service's code for a config or key that does not check.
      code === 78 && message.test(output) ? null : `exit ${code}, expected 78 and ${message}; said: ${output.slice(0, 400)}`,
    ]);
  };
  // A config cut off in the middle of a line: every service names the file and line.
  const cut = text.indexOf('[builder]') + 4;
  const truncated = join(dir, 'truncated.toml');
  await writeFile(truncated, text.slice(0, cut));
  const lineOf = new RegExp(`${truncated.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}:\\d+`);
  const checks: Promise<void>[] = [];
  for (const name of ['connector', 'builder', 'signer', 'uploader']) {
    checks.push(exitsWith(`truncated spark.toml (${name})`, name, truncated, lineOf));
  }
  await Promise.all(checks.splice(0));
  const variant = async (file: string, change: (toml: string) => string) => {
    const path = join(dir, file);
    await writeFile(path, change(text));
    return path;
  };
  const wrongType = await variant('wrong-type.toml', (toml) => toml.replace(/^MaxJobs = .*$/m, "MaxJobs = 'many'"));
  const noServer = await variant('no-server.toml', (toml) => toml.replace(/^LighthouseServer = .*$/m, ''));
  checks.push(exitsWith('MaxJobs a string (builder)', 'builder', wrongType, /MaxJobs/));
  checks.push(exitsWith('no LighthouseServer (connector)', 'connector', noServer, /LighthouseServer/));
  await Promise.all(checks.splice(0));

  // A wrong OpenPGP key: GpgKeyID names another key than the secret key file holds; then a file that is no key.
  const otherFingerprint = Array.from({ length: 40 }, () => random.int(0, 15).toString(16).toUpperCase()).join('');
  const wrongKey = await variant('wrong-openpgp.toml', (toml) => toml.replace(/^GpgKeyID = .*$/m, `GpgKeyID = '${otherFingerprint}'`));
  const notAKeyFile = join(dir, 'not-a-key.asc');
  await writeFile(notAKeyFile, '-----BEGIN PGP PRIVATE KEY BLOCK-----\n\ngarbage\n-----END PGP PRIVATE KEY BLOCK-----\n', { mode: 0o600 });
  const notAKey = await variant('not-a-key.toml', (toml) =>
    toml.replace(/^GpgSecretKeyFile = .*$/m, `GpgSecretKeyFile = '${notAKeyFile}'`),
  );
  checks.push(exitsWith('GpgKeyID of another key (signer)', 'signer', wrongKey, new RegExp(otherFingerprint.slice(-16), 'i')));
  checks.push(exitsWith('secret key file holding no key (signer)', 'signer', notAKey, /key/i));
  await Promise.all(checks.splice(0));

  // Wrong Curve keys: the connector keeps running and says which key is wrong (own queue prefix, so it takes no work).
  const curveDir = join(chain.dir, 'keys', 'curve');
  const machine = chain.config.machineName;
  const badServerDir = join(dir, 'curve-bad-server');
  await mkdir(join(badServerDir, 'secret'), { recursive: true });
  await copyFile(join(curveDir, 'secret', `${machine}-spark_private.sec`), join(badServerDir, 'secret', `${machine}-spark_private.sec`));
  const stranger = curveKeyPair();
  await writeFile(
    join(badServerDir, `${machine}_lighthouse-server.pub`),
    formatCurveKeyFile({ metadata: {}, curvePublicKey: stranger.publicKey, curveSecretKey: null, edVerifyKey: null, edSigningKey: null }),
  );
  const badWorkerDir = join(dir, 'curve-untrusted');
  await mkdir(join(badWorkerDir, 'secret'), { recursive: true });
  await copyFile(join(curveDir, `${machine}_lighthouse-server.pub`), join(badWorkerDir, `${machine}_lighthouse-server.pub`));
  const untrusted = curveKeyPair();
  await writeFile(
    join(badWorkerDir, 'secret', `${machine}-spark_private.sec`),
    formatCurveKeyFile({
      metadata: {},
      curvePublicKey: untrusted.publicKey,
      curveSecretKey: untrusted.secretKey,
      edVerifyKey: null,
      edSigningKey: null,
    }),
    { mode: 0o600 },
  );
  const keyed = (file: string, keys: string) =>
    variant(file, (toml) => toml.replace(/^CurveKeysDir = .*$/m, `CurveKeysDir = '${keys}'\nQueuePrefix = 'hostile${random.int(0, 1e6)}'`));
  const runsAndSays = async (name: string, config: string, message: RegExp) => {
    const { output } = await service('connector', config, message);
    outcomes.push([name, message.test(output) ? null : `expected ${message} in the log; said: ${output.slice(-600)}`]);
  };
  await Promise.all([
    runsAndSays(
      'Lighthouse server key of another server (connector)',
      await keyed('bad-server.toml', badServerDir),
      /probably not Lighthouse's/,
    ),
    runsAndSays(
      'worker Curve key Lighthouse does not trust (connector)',
      await keyed('untrusted.toml', badWorkerDir),
      /refused this worker's Curve key/,
    ),
  ]);
  return outcomes;
}
