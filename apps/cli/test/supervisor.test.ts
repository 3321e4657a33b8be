import assert from 'node:assert/strict';
import { PassThrough } from 'node:stream';
import { describe, it } from 'node:test';
import { builderStopTimeoutMs, superviseChildren, type ChildSpec } from '@spark/cli';
import { waitFor } from '@spark/testing';

/** A child that logs like a service and runs until SIGTERM, then exits 0. */
function serviceLike(name: string): ChildSpec {
  // It says it started once its SIGTERM handler is in place, as the services do.
  const script = `
    process.on('SIGTERM', () => { console.log(JSON.stringify({ level: 30, service: ${JSON.stringify(name)}, msg: 'stopped' })); process.exit(0); });
    console.log(JSON.stringify({ level: 30, service: ${JSON.stringify(name)}, msg: 'started' }));
    console.error('plain text on stderr');
    setInterval(() => {}, 1000);`;
  return { name, command: process.execPath, args: ['-e', script] };
}

function collect() {
  const out = new PassThrough();
  const lines: Record<string, unknown>[] = [];
  let buffer = '';
  out.on('data', (chunk: Buffer) => {
    buffer += chunk.toString();
    const parts = buffer.split('\n');
    buffer = parts.pop() ?? '';
    for (const part of parts) lines.push(JSON.parse(part) as Record<string, unknown>);
  });
  return { out, lines };
}

/** `node -e` source that sets `onTerm` as its SIGTERM handler, then says it is ready (a JSON line naming `name`), and runs on. */
function childScript(name: string, onTerm: string): string {
  return `process.on("SIGTERM", ${onTerm}); console.log(JSON.stringify({ service: ${JSON.stringify(name)}, msg: "ready" })); setInterval(() => {}, 1000)`;
}

/** True once every child named has said it is ready: its SIGTERM handler is in place, whatever the machine's load. */
function ready(lines: Record<string, unknown>[], ...names: string[]): boolean {
  return names.every((name) => lines.some((line) => line['msg'] === 'ready' && line['service'] === name));
}

describe('superviseChildren', () => {
  it('restarts a child killed with SIGKILL and keeps the others running', async () => {
    const { out, lines } = collect();
    const supervisor = superviseChildren([serviceLike('connector'), serviceLike('signer')], { out, initialBackoffMs: 50 });
    await waitFor('both children to start', () => lines.filter((l) => l['msg'] === 'started').length === 2, {
      timeoutMs: 10_000,
      intervalMs: 20,
    });
    const signerPid = supervisor.pid('signer');
    const connectorPid = supervisor.pid('connector');
    assert.ok(connectorPid);
    process.kill(connectorPid, 'SIGKILL');
    await waitFor('the connector to restart', () => lines.filter((l) => l['msg'] === 'started').length === 3, {
      timeoutMs: 10_000,
      intervalMs: 20,
    });
    assert.equal(supervisor.starts('connector'), 2);
    assert.notEqual(supervisor.pid('connector'), connectorPid);
    assert.equal(supervisor.pid('signer'), signerPid);
    assert.ok(lines.some((l) => l['child'] === 'connector' && /connector exited \(SIGKILL\); restarting in 50 ms/.test(String(l['msg']))));
    assert.equal(await supervisor.stop(), 0);
    assert.equal(lines.filter((l) => l['msg'] === 'stopped').length, 2, 'SIGTERM is forwarded to every child');
  });

  it('wraps plain output in JSON lines that name the service', async () => {
    const { out, lines } = collect();
    const supervisor = superviseChildren([serviceLike('uploader')], { out });
    await waitFor('the stderr line', () => lines.some((l) => l['msg'] === 'plain text on stderr'), { timeoutMs: 10_000, intervalMs: 20 });
    assert.deepEqual(
      lines.filter((l) => l['msg'] === 'plain text on stderr').map((l) => [l['service'], l['level']]),
      [['uploader', 50]],
    );
    await supervisor.stop();
    await supervisor.stop();
  });

  it('stops everything with code 78 when a child reports a configuration error (EX_CONFIG)', async () => {
    const { out, lines } = collect();
    const broken: ChildSpec = {
      name: 'builder',
      command: process.execPath,
      args: ['-e', 'console.error("spark.toml:3: MaxJobs: bad"); process.exit(78)'],
    };
    const supervisor = superviseChildren([broken, serviceLike('signer')], { out, initialBackoffMs: 50 });
    assert.equal(await supervisor.done, 78);
    assert.equal(supervisor.starts('builder'), 1, 'a config error is not restarted');
    assert.ok(lines.some((l) => l['msg'] === 'spark.toml:3: MaxJobs: bad' && l['service'] === 'builder'));
  });

  it('stops everything with code 66 when a child finds a file missing, and restarts one that exits 69 or 70', async () => {
    const { out } = collect();
    const missing: ChildSpec = { name: 'signer', command: process.execPath, args: ['-e', 'process.exit(66)'] };
    const supervisor = superviseChildren([missing], { out, initialBackoffMs: 50 });
    assert.equal(await supervisor.done, 66);
    assert.equal(supervisor.starts('signer'), 1);

    const flaky: ChildSpec = { name: 'uploader', command: process.execPath, args: ['-e', 'process.exit(69)'] };
    const crashing: ChildSpec = { name: 'builder', command: process.execPath, args: ['-e', 'process.exit(70)'] };
    const restarting = superviseChildren([flaky, crashing], { out: collect().out, initialBackoffMs: 20 });
    await waitFor('restarts of 69 and 70', () => restarting.starts('uploader') >= 3 && restarting.starts('builder') >= 3, {
      timeoutMs: 10_000,
      intervalMs: 20,
    });
    assert.equal(await restarting.stop(), 0);
  });

  it('forwards SIGHUP to every running child', async () => {
    const { out, lines } = collect();
    const reloading = (name: string): ChildSpec => ({
      name,
      command: process.execPath,
      args: [
        '-e',
        `process.on("SIGHUP", () => console.log(JSON.stringify({ service: ${JSON.stringify(name)}, msg: "reloaded" }))); ${childScript(name, '() => process.exit(0)')}`,
      ],
    });
    const supervisor = superviseChildren([reloading('connector'), reloading('uploader')], { out });
    await waitFor('the children to be ready', () => ready(lines, 'connector', 'uploader'), { timeoutMs: 10_000, intervalMs: 20 });
    supervisor.reload();
    await waitFor(
      'both children to reload',
      () => ['connector', 'uploader'].every((name) => lines.some((l) => l['msg'] === 'reloaded' && l['service'] === name)),
      { timeoutMs: 10_000, intervalMs: 20 },
    );
    assert.equal(supervisor.pid('connector') !== null && supervisor.pid('uploader') !== null, true, 'both still run');
    assert.equal(await supervisor.stop(), 0);
  });

  it('kills a child that ignores SIGTERM after the stop timeout', async () => {
    const { out, lines } = collect();
    const stubborn: ChildSpec = { name: 'builder', command: process.execPath, args: ['-e', childScript('builder', '() => {}')] };
    const supervisor = superviseChildren([stubborn], { out, stopTimeoutMs: 200 });
    await waitFor('the child to be ready', () => ready(lines, 'builder'), { timeoutMs: 10_000, intervalMs: 20 });
    assert.equal(await supervisor.stop(), 0);
    assert.equal(supervisor.pid('builder'), null);
    assert.ok(lines.some((line) => String(line['msg']).includes('builder did not stop within 200 ms: SIGKILL')));
  });

  it('gives a child its own stop timeout: a draining builder is not killed at the default', async () => {
    const { out, lines } = collect();
    // It drains for 1.5 s, past the default 0.5 s that the signer (which stops at once) has.
    const draining: ChildSpec = {
      name: 'builder',
      command: process.execPath,
      args: ['-e', childScript('builder', '() => setTimeout(() => process.exit(0), 1500)')],
      stopTimeoutMs: 30_000,
    };
    const supervisor = superviseChildren([draining, serviceLike('signer')], { out, stopTimeoutMs: 500 });
    await waitFor('both children to be ready', () => ready(lines, 'builder') && lines.some((l) => l['msg'] === 'started'), {
      timeoutMs: 10_000,
      intervalMs: 20,
    });
    assert.equal(await supervisor.stop(), 0);
    assert.ok(!lines.some((line) => String(line['msg']).includes('SIGKILL')), 'nothing was killed');
  });

  it('follows the builder DrainTimeout in spark run', () => {
    assert.equal(builderStopTimeoutMs(600_000), 660_000);
  });

  it('stops the children on a second request: SIGTERM again, then SIGKILL after the short grace', async () => {
    const { out, lines } = collect();
    // Drains forever on the first SIGTERM, exits on the second (as the services do).
    const said = (name: string) => `console.log(JSON.stringify({ service: "${name}", msg: "SIGTERM " + n }))`;
    const script = childScript('connector', `() => { n += 1; ${said('connector')}; if (n > 1) process.exit(0); }`);
    const stubborn: ChildSpec = {
      name: 'builder',
      command: process.execPath,
      args: ['-e', `let n = 0; ${childScript('builder', `() => { n += 1; ${said('builder')}; }`)}`],
      stopTimeoutMs: 60_000,
    };
    const draining: ChildSpec = {
      name: 'connector',
      command: process.execPath,
      args: ['-e', `let n = 0; ${script}`],
      stopTimeoutMs: 60_000,
    };
    const supervisor = superviseChildren([stubborn, draining], { out });
    await waitFor('both children to be ready', () => ready(lines, 'builder', 'connector'), { timeoutMs: 10_000, intervalMs: 20 });
    void supervisor.stop();
    await waitFor(
      'both children to get the first SIGTERM',
      () => ['builder', 'connector'].every((name) => lines.some((line) => line['service'] === name && line['msg'] === 'SIGTERM 1')),
      {
        timeoutMs: 10_000,
        intervalMs: 20,
      },
    );
    const t0 = Date.now();
    assert.equal(await supervisor.hurry(300), 0);
    assert.ok(Date.now() - t0 < 5_000);
    assert.equal(supervisor.pid('builder'), null);
    assert.equal(supervisor.pid('connector'), null);
    assert.ok(lines.some((line) => String(line['msg']).includes('builder did not stop within 300 ms: SIGKILL')));
    assert.ok(!lines.some((line) => String(line['msg']).includes('connector did not stop')));
  });
});
