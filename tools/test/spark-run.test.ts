import assert from 'node:assert/strict';
import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { after, before, describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { startChain, type Chain } from '../src/chain/chain.js';
import { SERVICES } from '@spark/cli';
import { nodeEntryArgs, waitFor } from '@spark/testing';

const run = promisify(execFile);
const spark = fileURLToPath(import.meta.resolve('@spark/cli/main'));

/** Pids of this chain's service processes (their command line names the chain's config file). */
async function servicePid(name: string, configFile: string): Promise<number | null> {
  const { stdout } = await run('pgrep', ['-f', `apps/${name}/src/main.ts --config ${configFile}`]).catch(() => ({ stdout: '' }));
  const pids = stdout.split('\n').filter(Boolean).map(Number);
  return pids[0] ?? null;
}

describe('spark run', () => {
  let chain: Chain;
  let supervisor: ChildProcess;
  let output = '';
  before(async () => {
    chain = await startChain();
    supervisor = spawn(process.execPath, [...nodeEntryArgs(spark), 'run', '--config', chain.configFile], {
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    supervisor.stdout?.on('data', (chunk: Buffer) => (output += chunk.toString()));
    supervisor.stderr?.on('data', (chunk: Buffer) => (output += chunk.toString()));
  });
  after(async () => {
    if (supervisor.exitCode === null) supervisor.kill('SIGKILL');
    await chain.close();
  });

  const success = (uuid: string) =>
    chain.standIn.waitFor((requests) => requests.some((r) => r['request'] === 'job-success' && r['uuid'] === uuid), 90_000);

  it('survives kill -9 of every child and keeps building; SIGTERM stops all of them', async () => {
    const first = await chain.archive.packageJob({ name: 'run-one', version: '1.0' });
    chain.standIn.addJob(first);
    await success(first.uuid);

    for (const name of SERVICES) {
      const pid = await waitFor(`${name} to run`, () => servicePid(name, chain.configFile), { timeoutMs: 60_000, intervalMs: 100 });
      process.kill(pid, 'SIGKILL');
      const again = await waitFor(
        `${name} to be restarted`,
        async () => {
          const next = await servicePid(name, chain.configFile);
          return next !== null && next !== pid ? next : null;
        },
        { timeoutMs: 60_000, intervalMs: 100 },
      );
      assert.notEqual(again, pid);
    }
    assert.match(output, /"child":"connector".*connector exited \(SIGKILL\); restarting/);
    assert.match(output, /"child":"uploader".*uploader exited \(SIGKILL\); restarting/);

    const second = await chain.archive.packageJob({ name: 'run-two', version: '1.0' });
    chain.standIn.addJob(second);
    await success(second.uuid);
    // Logs of all children are JSON lines carrying the service name.
    for (const name of SERVICES) assert.match(output, new RegExp(`"service":"${name}"`));

    const exited = new Promise<number | null>((resolve) => supervisor.once('exit', (code) => resolve(code)));
    supervisor.kill('SIGTERM');
    assert.equal(await exited, 0);
    for (const name of SERVICES) assert.equal(await servicePid(name, chain.configFile), null, `${name} left running`);
  });
});
