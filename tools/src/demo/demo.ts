#!/usr/bin/env node
import { execFile, spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdtemp, readdir } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { startChain, type Chain, type ServiceName } from '../chain/chain.js';

/*
 * `npm start`: the whole worker on this machine, on an embedded default — a
 * private Redis, a Lighthouse stand-in with one sample package-build job, an
 * upload receiver, throwaway Curve and OpenPGP keys, and the four services.
 * The job is built in debspawn, signed and uploaded; every stage is printed as
 * it happens; at the end, where the signed files landed and gpgv's verdict.
 * Everything it started is stopped before it exits.
 */

const run = promisify(execFile);
const SUITE = 'bookworm';
const started = Date.now();
const out = (who: string, text: string) =>
  process.stdout.write(`[${((Date.now() - started) / 1000).toFixed(1).padStart(6)}s] ${who.padEnd(10)} ${text}\n`);

async function ensureImage(): Promise<void> {
  const { stdout } = await run('debspawn', ['list']).catch(() => ({ stdout: '' }));
  if (stdout.split('\n').some((line) => line.startsWith(`[${SUITE}-`))) return;
  out('demo', `no debspawn image for ${SUITE} yet: creating it with "debspawn create ${SUITE}" (about a minute)…`);
  // Without a system bus, nspawn needs the build helper's wrapper (--keep-unit --register=no), as the builder does.
  const wrapper = dirname(fileURLToPath(import.meta.resolve('@spark/build-helper/systemd-nspawn')));
  const env = existsSync('/run/dbus/system_bus_socket') ? process.env : { ...process.env, PATH: `${wrapper}:${process.env['PATH'] ?? ''}` };
  const creating = spawn('debspawn', ['create', SUITE], { env, stdio: ['ignore', 'ignore', 'inherit'] });
  const ticker = setInterval(() => out('demo', 'still creating the image…'), 15_000);
  const code = await new Promise<number | null>((resolve) => creating.once('exit', resolve));
  clearInterval(ticker);
  if (code !== 0) {
    throw new Error(
      `debspawn create ${SUITE} failed (exit ${code}); run "sudo debspawn create ${SUITE}" by hand to see why (bash scripts/setup.sh does it too)`,
    );
  }
}

/** Prints the services' info-level log messages: the stages as they happen. */
function printLog(service: ServiceName, line: string): void {
  let entry: { level?: number; msg?: string; jobId?: string };
  try {
    entry = JSON.parse(line) as typeof entry;
  } catch {
    out(service, line);
    return;
  }
  if ((entry.level ?? 30) >= 30 && entry.msg) out(service, entry.msg);
}

async function main(): Promise<number> {
  out('demo', 'spark-ts demo: one package build through connector → builder → signer → uploader');
  await ensureImage();
  const dir = await mkdtemp(join(tmpdir(), 'spark-demo-'));
  let chain: Chain | null = null;
  const stop = async () => {
    if (chain) await chain.close();
    chain = null;
  };
  process.once('SIGINT', () => void stop().then(() => process.exit(130)));
  process.once('SIGTERM', () => void stop().then(() => process.exit(143)));
  try {
    out('demo', `setting up in ${dir}: Redis, Lighthouse stand-in (CURVE), upload receiver, keys`);
    chain = await startChain({ dir, runner: 'debspawn', onLog: printLog });
    const job = await chain.archive.packageJob({
      name: 'spark-demo-hello',
      version: '1.0',
      cSource: '#include <stdio.h>\nint main(void) { int unused; puts("hello from spark-ts"); return 0; }\n',
    });
    chain.standIn.addJob(job);
    out('lighthouse', `job ${job.uuid} waiting: package-build of spark-demo-hello 1.0 for amd64 (${SUITE})`);
    chain.start();

    let seen = 0;
    const outcome = await new Promise<string>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error('the job did not finish within 10 minutes')), 600_000);
      const poll = setInterval(() => {
        const requests = chain?.standIn.requests ?? [];
        for (; seen < requests.length; seen++) {
          const request = requests[seen];
          if (!request || request['uuid'] !== job.uuid) continue;
          const name = String(request['request']);
          out('lighthouse', name === 'job-status' ? 'job-status (log excerpt received)' : `${name} received`);
          if (name === 'job-success' || name === 'job-failed' || name === 'job-rejected') {
            clearInterval(poll);
            clearTimeout(timer);
            resolve(name);
          }
        }
      }, 100);
    });

    const landed = join(chain.uploadsDir, 'master');
    const files = existsSync(landed) ? (await readdir(landed)).sort() : [];
    out(
      'demo',
      `${outcome === 'job-success' ? 'done' : `the job ended with ${outcome}`}; the archive received ${files.length} file(s) in ${landed}:`,
    );
    let verified = true;
    for (const file of files) {
      if (!/\.(changes|dud|buildinfo)$/.test(file)) {
        out('archive', file);
        continue;
      }
      const verdict = await run('gpgv', ['--keyring', chain.key.keyring, join(landed, file)]).then(
        ({ stderr }) => `gpgv: ${/Good signature.*/.exec(stderr)?.[0] ?? 'OK'}`,
        (error: { stderr?: string }) => {
          verified = false;
          return `gpgv FAILED: ${(error.stderr ?? '').trim().split('\n').pop() ?? ''}`;
        },
      );
      out('archive', `${file}  —  ${verdict}`);
    }
    out(
      'demo',
      `build log: ${join(chain.config.logsDir, `${job.uuid}.log`)}; everything is kept in ${dir} (remove it with: rm -rf ${dir})`,
    );
    return outcome === 'job-success' && verified && files.length > 0 ? 0 : 1;
  } finally {
    out('demo', 'stopping the services, the stand-ins and Redis');
    await stop();
  }
}

main().then(
  (code) => process.exit(code),
  (error: unknown) => {
    process.stderr.write(`spark demo: ${(error as Error).message}\n`);
    process.exit(1);
  },
);
