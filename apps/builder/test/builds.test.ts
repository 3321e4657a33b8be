import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { randomUUID, createHash } from 'node:crypto';
import { existsSync } from 'node:fs';
import { chmod, mkdir, mkdtemp, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { promisify } from 'node:util';
import { pino } from 'pino';
import {
  reportJobId,
  builderHeartbeatSchema,
  jobArtifactsDir,
  jobLogFile,
  jobSourceDir,
  jobWorkspaceDir,
  parseControlFile,
  parseFileList,
  reportPayloadSchema,
  signPayloadSchema,
  stageJobId,
  type Manifest,
  type ReportPayload,
} from '@spark/protocol';
import { systemClock } from '@spark/service';
import { makeSourcePackage, within } from '@spark/testing';
import type { Builder } from '../src/builder.js';
import { debspawnCommand, detectDebspawnEnvironment } from '../src/debspawn-command.js';
import { openJobLog } from '../src/job-log.js';
import { JobStop } from '../src/job-stop.js';
import { signalProcessGroup } from '../src/process-tree.js';
import { runLogged } from '../src/run-logged.js';
import { FakeBuilderWorld } from './fake-builder-world.js';
import { BUILD_WAIT, serveDirectory, testConfig } from './fixtures.js';

/** The round of every job these tests hand the builder (as the connector would number it). */
const R = '1764405000000';
const run = promisify(execFile);

interface Served {
  dscUrl: string;
  sha256: string;
}

describe('builder with real debspawn builds', { timeout: 300_000 }, () => {
  let root: string;
  let http: Awaited<ReturnType<typeof serveDirectory>>;
  let builder: Builder;
  // The queues on the wall clock: the builder's heartbeat says when it was beaten.
  const world = new FakeBuilderWorld(systemClock);
  const { buildQueue, signQueue, reportQueue } = world;
  let config: ReturnType<typeof testConfig>;

  const serve = async (name: string, spec: Parameters<typeof makeSourcePackage>[1]): Promise<Served> => {
    const dir = join(root, 'archive', name);
    await mkdir(dir, { recursive: true });
    const pkg = await makeSourcePackage(dir, spec);
    const dscName = pkg.dsc.split('/').pop() as string;
    return { dscUrl: `${http.url}/${name}/${dscName}`, sha256: sha256(await readFile(pkg.dsc)) };
  };

  const packageJob = (uuid: string, name: string, served: Served, suite = 'bookworm') => ({
    job: {
      uuid,
      module: 'default',
      kind: 'package-build',
      version: '1',
      architecture: 'amd64',
      time_created: '2026-11-26T00:00:00',
      repo: 'master',
      data: {
        package_name: name,
        package_version: '1.0',
        maintainer: null,
        suite,
        dsc_url: served.dscUrl,
        sha256sum: served.sha256,
        do_indep: true,
      },
    },
    round: R,
    receivedAt: Date.now(),
  });

  const manifestOf = async (uuid: string) =>
    signPayloadSchema.parse(
      (await within(`the sign job of ${uuid}`, signQueue.added(stageJobId({ uuid, round: R }, 'sign')), BUILD_WAIT.timeoutMs)).data,
    ).manifest;
  const finalReport = async (uuid: string) =>
    reportPayloadSchema.parse(
      (
        await within(
          `the final report of ${uuid}`,
          reportQueue.added(reportJobId({ uuid, round: R }, { kind: 'final' })),
          BUILD_WAIT.timeoutMs,
        )
      ).data,
    );
  const reportsOf = (uuid: string): Promise<ReportPayload[]> => {
    const jobs = reportQueue.jobs().filter((job) => ['waiting', 'delayed', 'completed'].includes(job.state));
    return Promise.resolve(jobs.map((job) => reportPayloadSchema.parse(job.data)).filter((report) => report.uuid === uuid));
  };
  const artifact = (uuid: string, name: string) => join(jobArtifactsDir(config.workspacesDir, { uuid, round: R }), name);

  /** Checks every manifest entry against the file on disk, and the `.dud` fields and checksums. */
  const checkManifestAndDud = async (manifest: Manifest, result: string) => {
    assert.equal(manifest.result, result);
    assert.equal(manifest.repo, 'master');
    for (const entry of manifest.files) {
      const bytes = await readFile(artifact(manifest.uuid, entry.name));
      assert.equal(bytes.length, entry.size, entry.name);
      assert.equal(sha256(bytes), entry.sha256, entry.name);
    }
    assert.equal(manifest.dud, `${manifest.uuid}.dud`);
    const dud = parseControlFile(await readFile(artifact(manifest.uuid, manifest.dud), 'utf8')).paragraphs[0];
    assert.ok(dud);
    assert.equal(dud.get('Format'), '1.8');
    assert.equal(dud.get('Architecture'), 'amd64');
    assert.equal(dud.get('X-Spark-Job'), manifest.uuid);
    assert.equal(dud.get('X-Spark-Result'), result);
    assert.match(dud.get('Date') ?? '', /^[A-Z][a-z]{2}, \d{2} [A-Z][a-z]{2} \d{4} \d{2}:\d{2}:\d{2} [-+]\d{4}$/);
    const sha256s = parseFileList(dud.get('Checksums-Sha256'));
    const md5s = parseFileList(dud.get('Files'));
    const sha1s = parseFileList(dud.get('Checksums-Sha1'));
    assert.ok(sha256s.some((entry) => entry.name === `${manifest.uuid}.log`));
    assert.ok(sha256s.some((entry) => entry.name.endsWith('.firehose.xml')));
    for (const entry of sha256s) {
      const bytes = await readFile(artifact(manifest.uuid, entry.name));
      assert.equal(entry.digest, sha256(bytes), entry.name);
      assert.equal(entry.size, bytes.length);
      assert.equal(md5s.find((e) => e.name === entry.name)?.digest, createHash('md5').update(bytes).digest('hex'));
      assert.equal(md5s.find((e) => e.name === entry.name)?.section, 'spark');
      assert.equal(sha1s.find((e) => e.name === entry.name)?.digest, createHash('sha1').update(bytes).digest('hex'));
      assert.ok(
        manifest.files.some((file) => file.name === entry.name),
        `${entry.name} is in the manifest`,
      );
    }
    return sha256s.map((entry) => entry.name);
  };

  const jobs = {
    success: randomUUID(),
    ftbfs: randomUUID(),
    depwait: randomUUID(),
    noImage: randomUUID(),
    tampered: randomUUID(),
    image: randomUUID(),
  };

  before(async () => {
    root = await mkdtemp(join(tmpdir(), 'spark-builder-'));
    http = await serveDirectory(join(root, 'archive'));
    // RedisUrl is never dialled: the queues, heartbeats and control channel are the world's, in memory.
    config = testConfig({ workspaceRoot: join(root, 'ws'), redisUrl: 'redis://127.0.0.1:1', prefix: 'builds' });

    const warning = '#include <stdio.h>\nint main(void) { int unused; puts("hi"); return 0; }\n';
    const success = await serve('hellow', { name: 'hellow', version: '1.0', cSource: warning });
    const ftbfs = await serve('broken', { name: 'broken', version: '1.0', cSource: 'int main(void) { return no_such_symbol; }\n' });
    const depwait = await serve('waiting', { name: 'waiting', version: '1.0', buildDepends: 'spark-no-such-package (>= 9)' });
    const noImage = await serve('noimage', { name: 'noimage', version: '1.0' });
    const tampered = await serve('tampered', { name: 'tampered', version: '1.0' });
    const tarball = join(root, 'archive', 'tampered', 'tampered_1.0.tar.xz');
    const bytes = await readFile(tarball);
    bytes[bytes.length - 1] = (bytes[bytes.length - 1] ?? 0) ^ 0xff;
    await writeFile(tarball, bytes);

    const recipe = join(root, 'recipe');
    await mkdir(recipe);
    await writeFile(
      join(recipe, 'build.sh'),
      '#!/bin/sh\necho "image for $IB_SUITE $IB_ENVIRONMENT $IB_TARGET_ARCH"\necho disk > "/srv/artifacts/test-image_${IB_TARGET_ARCH}.img"\n',
    );
    await chmod(join(recipe, 'build.sh'), 0o755);
    await run('git', ['init', '-q', recipe]);
    await run('git', ['-C', recipe, 'add', '.']);
    await run('git', ['-C', recipe, '-c', 'user.name=t', '-c', 'user.email=t@example.org', 'commit', '-q', '-m', 'recipe']);

    builder = world.builder(config, pino({ level: 'silent' }), { id: 'builder-test' });
    await builder.start();
    await buildQueue.add('build', packageJob(jobs.success, 'hellow', success), {
      jobId: stageJobId({ uuid: jobs.success, round: R }, 'build'),
    });
    await buildQueue.add('build', packageJob(jobs.tampered, 'tampered', tampered), {
      jobId: stageJobId({ uuid: jobs.tampered, round: R }, 'build'),
    });
    await buildQueue.add('build', packageJob(jobs.noImage, 'noimage', noImage, 'sparknoimage'), {
      jobId: stageJobId({ uuid: jobs.noImage, round: R }, 'build'),
    });
    await buildQueue.add('build', packageJob(jobs.ftbfs, 'broken', ftbfs), { jobId: stageJobId({ uuid: jobs.ftbfs, round: R }, 'build') });
    await buildQueue.add('build', packageJob(jobs.depwait, 'waiting', depwait), {
      jobId: stageJobId({ uuid: jobs.depwait, round: R }, 'build'),
    });
    await buildQueue.add(
      'build',
      {
        job: {
          uuid: jobs.image,
          module: 'default',
          kind: 'os-image-build',
          architecture: 'amd64',
          repo: 'master',
          data: {
            image_format: 'img',
            git_url: `file://${recipe}`,
            distribution: 'debian',
            suite: 'bookworm',
            environment: 'minimal',
            style: null,
            architecture: 'amd64',
          },
        },
        round: R,
        receivedAt: Date.now(),
      },
      { jobId: stageJobId({ uuid: jobs.image, round: R }, 'build') },
    );
  });

  after(async () => {
    await builder?.close();
    await http?.close();
    if (root) await rm(root, { recursive: true, force: true });
  });

  it('publishes a heartbeat with its slots, kinds and architectures', () => {
    const raw = world.heartbeats.get('builder-test');
    assert.ok(raw, 'heartbeat written');
    const heartbeat = builderHeartbeatSchema.parse(raw);
    assert.equal(heartbeat.slots, 2);
    assert.deepEqual(heartbeat.kinds, ['package-build', 'os-image-build']);
    assert.deepEqual(heartbeat.architectures, ['amd64']);
    assert.equal(heartbeat.accepting, true);
    assert.ok(Date.now() - heartbeat.at < 10_000, 'beaten recently');
  });

  it('refuses a tampered source file before debspawn runs', async () => {
    const report = await finalReport(jobs.tampered);
    assert.equal(report.kind, 'rejected');
    assert.match(
      report.kind === 'rejected' ? report.reason : '',
      /source refused: tampered_1\.0\.tar\.xz: got \d+ bytes with SHA-256 [0-9a-f]{64}; tampered_1\.0\.dsc says/,
    );
    const log = await readFile(jobLogFile(config.logsDir, { uuid: jobs.tampered, round: R }), 'utf8');
    assert.doesNotMatch(log, /\$ debspawn/);
    assert.match(log, /job rejected back to Lighthouse: source refused/);
    assert.equal(signQueue.job(stageJobId({ uuid: jobs.tampered, round: R }, 'sign')), undefined);
    assert.ok(!existsSync(jobWorkspaceDir(config.workspacesDir, { uuid: jobs.tampered, round: R })), 'workspace removed');
    assert.ok((await reportsOf(jobs.tampered)).some((r) => r.kind === 'accepted'));
  });

  it("rejects a job whose suite has no image on this host, with debspawn's message", async () => {
    const report = await finalReport(jobs.noImage);
    assert.equal(report.kind, 'rejected');
    assert.match(
      report.kind === 'rejected' ? report.reason : '',
      /missing an environment: ERROR: The container image for "sparknoimage-buildd-amd64" does not exist/,
    );
    const log = await readFile(jobLogFile(config.logsDir, { uuid: jobs.noImage, round: R }), 'utf8');
    assert.match(log, /ERROR: The container image for/);
    assert.equal(signQueue.job(stageJobId({ uuid: jobs.noImage, round: R }, 'sign')), undefined);
  });

  it('builds a package: .changes with .deb and .buildinfo, warnings in the Firehose report, .dud, manifest to sign', async () => {
    const uuid = jobs.success;
    const manifest = await manifestOf(uuid);
    const dudFiles = await checkManifestAndDud(manifest, 'success');
    assert.equal(manifest.changes, 'hellow_1.0_amd64.changes');
    const changes = parseControlFile(await readFile(artifact(uuid, 'hellow_1.0_amd64.changes'), 'utf8')).paragraphs[0];
    const listed = parseFileList(changes?.get('Checksums-Sha256'))
      .map((entry) => entry.name)
      .sort();
    assert.deepEqual(listed, ['hellow_1.0_amd64.buildinfo', 'hellow_1.0_amd64.deb']);
    assert.deepEqual(
      manifest.files.map((file) => file.name).sort(),
      [...listed, 'hellow_1.0_amd64.changes', ...dudFiles, `${uuid}.dud`].sort(),
    );
    const firehoseName = `hellow_1.0_amd64.${uuid}.firehose.xml`;
    assert.ok(dudFiles.includes(firehoseName));
    const issues = await parseXmlIssues(artifact(uuid, firehoseName));
    assert.deepEqual(issues.generator, 'spark-ts/debspawn');
    assert.equal(issues.sut, 'hellow 1.0');
    assert.deepEqual(issues.issues, [
      { testId: '-Wunused-variable', file: 'hello.c', fn: 'main', line: '2', column: '22', message: 'unused variable ‘unused’' },
    ]);
    const log = await readFile(jobLogFile(config.logsDir, { uuid: uuid, round: R }), 'utf8');
    assert.match(log, /gcc -Wall -Wextra/);
    assert.equal(await readFile(artifact(uuid, `${uuid}.log`), 'utf8'), log);
    // Every artifact exists once (the signer signs nothing else): the log is a copy of the kept log, not a second link to it.
    for (const file of manifest.files) assert.equal((await stat(artifact(uuid, file.name))).nlink, 1, `${file.name} has one link`);
    assert.notEqual((await stat(artifact(uuid, `${uuid}.log`))).ino, (await stat(jobLogFile(config.logsDir, { uuid, round: R }))).ino);
    // The .dsc as fetched and verified, kept for the signer (it reads the source's binary packages from it).
    const kept = await readFile(join(jobSourceDir(config.workspacesDir, { uuid, round: R }), 'hellow_1.0.dsc'));
    assert.deepEqual(kept, await readFile(join(root, 'archive', 'hellow', 'hellow_1.0.dsc')));
    const reports = await reportsOf(uuid);
    assert.ok(reports.some((r) => r.kind === 'accepted'));
    const excerpts = reports.flatMap((r) => (r.kind === 'status' ? [r.logExcerpt] : [])).join('');
    assert.match(excerpts, /dpkg-buildpackage/);
    assert.ok(!excerpts.includes('\u001b'), 'excerpts carry no terminal escapes');
    assert.ok(!reports.some((r) => r.kind === 'rejected'), 'a built job is not rejected');
  });

  it('reports a compile error as failure: the log shows it, only the log and Firehose report go to sign', async () => {
    const uuid = jobs.ftbfs;
    const manifest = await manifestOf(uuid);
    const dudFiles = await checkManifestAndDud(manifest, 'failure');
    assert.equal(manifest.changes, null);
    assert.deepEqual(manifest.files.map((file) => file.name).sort(), [...dudFiles, `${uuid}.dud`].sort());
    const log = await readFile(jobLogFile(config.logsDir, { uuid: uuid, round: R }), 'utf8');
    assert.match(log, /no_such_symbol/);
    assert.match(log, /job finished: failure \(debspawn exited with code \d+\)/);
  });

  it('reports unsatisfiable build dependencies as depwait', async () => {
    const uuid = jobs.depwait;
    const manifest = await manifestOf(uuid);
    await checkManifestAndDud(manifest, 'depwait');
    assert.equal(manifest.changes, null);
    const log = await readFile(jobLogFile(config.logsDir, { uuid: uuid, round: R }), 'utf8');
    assert.match(log, /spark-no-such-package/);
  });

  it('a cancel stops a real debspawn container run at once, and nothing of the container is left running', async () => {
    const dir = await mkdtemp(join(root, 'cancel-'));
    // Odd durations, to find these processes (and only these) afterwards.
    const script = join(dir, 'command.sh');
    await writeFile(script, '#!/bin/sh\necho "inside the container"\nsleep 4321 &\nsleep 4322\n');
    await chmod(script, 0o755);
    const log = await openJobLog(join(dir, 'run.log'));
    const stopper = new AbortController();
    const seen = new Promise<void>((resolve) => log.onLine(['inside the container'], () => resolve()));
    const command = debspawnCommand(detectDebspawnEnvironment('debspawn'), ['run', '--external-command', 'bookworm', script]);
    const sent: NodeJS.Signals[] = [];
    const signalTree = command.signalTree ?? signalProcessGroup;
    const running = runLogged(
      {
        ...command,
        signalTree: (pid, signal) => {
          sent.push(signal);
          signalTree(pid, signal);
        },
      },
      log,
      { idleOutputTimeoutMs: 120_000, killGraceMs: 60_000, signal: stopper.signal },
    );
    await seen;
    stopper.abort(new JobStop('cancelled', 'cancelled by operator: test'));
    const outcome = await running;
    await log.close();
    assert.equal(outcome.stopped?.kind, 'cancelled');
    // At once: SIGTERM ended debspawn and its container within the grace period; nothing had to be killed.
    assert.deepEqual(sent, ['SIGTERM']);
    const { stdout } = await run('ps', ['-eo', 'stat=,args=']);
    const left = stdout.split('\n').filter((line) => /\bsleep 432[12]\b/.test(line) && !line.startsWith('Z'));
    assert.deepEqual(left, []);
  });

  it('runs an os-image-build recipe in debspawn and collects its artifact', async () => {
    const uuid = jobs.image;
    const manifest = await manifestOf(uuid);
    assert.equal(manifest.result, 'success');
    const dud = parseControlFile(await readFile(artifact(uuid, `${uuid}.dud`), 'utf8')).paragraphs[0];
    const names = parseFileList(dud?.get('Checksums-Sha256'))
      .map((entry) => entry.name)
      .sort();
    assert.deepEqual(names, [`${uuid}.log`, 'test-image_amd64.img']);
    assert.equal(await readFile(artifact(uuid, 'test-image_amd64.img'), 'utf8'), 'disk\n');
    const log = await readFile(jobLogFile(config.logsDir, { uuid: uuid, round: R }), 'utf8');
    assert.match(log, /image for bookworm minimal amd64/);
    // As spark's log: the recipe commit, then the command file traced by `set -x` through debspawn.
    assert.match(log, /\$ git log --pretty=oneline -1\n[0-9a-f]{40} /);
    assert.match(log, /^\+ exec \.\/build\.sh$/m);
  });
});

function sha256(bytes: Buffer): string {
  return createHash('sha256').update(bytes).digest('hex');
}

/** Parses a Firehose file with Python's XML parser (a real, independent one) and returns what a reader sees. */
async function parseXmlIssues(path: string): Promise<{ generator: string; sut: string; issues: Record<string, string>[] }> {
  const script = `
import json, sys, xml.etree.ElementTree as ET
root = ET.parse(sys.argv[1]).getroot()
assert root.tag == 'analysis'
gen = root.find('metadata/generator')
sut = root.find('metadata/sut/debian-source')
issues = []
for issue in root.findall('results/issue'):
    loc = issue.find('location')
    point = loc.find('point')
    issues.append({'testId': issue.get('test-id'), 'file': loc.find('file').get('given-path'), 'fn': loc.find('function').get('name'),
                   'line': point.get('line'), 'column': point.get('column'), 'message': issue.find('message').text})
print(json.dumps({'generator': gen.get('name'), 'sut': sut.get('name') + ' ' + sut.get('version'), 'issues': issues}))
`;
  const { stdout } = await run('python3', ['-c', script, path]);
  return JSON.parse(stdout) as { generator: string; sut: string; issues: Record<string, string>[] };
}
