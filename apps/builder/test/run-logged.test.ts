import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { mkdir, mkdtemp, readFile, rm, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { openJobLog, type JobLog } from '../src/job-log.js';
import { JobStop } from '../src/job-stop.js';
import { signalProcessGroup, type SignalTree } from '../src/process-tree.js';
import { runLogged, type RunLoggedOptions } from '../src/run-logged.js';
import { mountTinyDisk } from '@spark/testing';

const run = promisify(execFile);

/** Pids written by the test commands into `dir`, still alive (zombies are dead). */
async function aliveOf(pids: readonly number[]): Promise<number[]> {
  const alive: number[] = [];
  for (const pid of pids) {
    const state = await readFile(`/proc/${pid}/stat`, 'utf8').catch(() => null);
    if (state !== null && !/^\d+ \(.*\) Z/.test(state)) alive.push(pid);
  }
  return alive;
}

async function pidsIn(file: string): Promise<number[]> {
  const text = await readFile(file, 'utf8').catch(() => '');
  return text.split('\n').filter(Boolean).map(Number);
}

/** Resolves once `log` holds a line with `needle`: the command got that far (a stop sent earlier could find it half started). */
function lineSeen(log: JobLog, needle: string): Promise<void> {
  return new Promise((resolve) => log.onLine([needle], () => resolve()));
}

/** A {@link SignalTree} that records each signal it sends, then sends it as `signalTree` would. */
function recordingSignals(sent: NodeJS.Signals[], signalTree: SignalTree = signalProcessGroup): SignalTree {
  return (pid, signal) => {
    sent.push(signal);
    signalTree(pid, signal);
  };
}

describe('runLogged: every way a command ends ends its whole tree, in bounded time', { timeout: 300_000 }, () => {
  let root: string;
  const logs: JobLog[] = [];
  const open = async (name: string, maxOutputBytes?: number, dir = root) => {
    const log = await openJobLog(join(dir, name), maxOutputBytes === undefined ? {} : { maxOutputBytes });
    logs.push(log);
    return log;
  };
  const limits = (overrides: Partial<RunLoggedOptions> = {}): RunLoggedOptions => ({
    idleOutputTimeoutMs: 60_000,
    killGraceMs: 500,
    signal: new AbortController().signal,
    ...overrides,
  });

  before(async () => {
    root = await mkdtemp(join(tmpdir(), 'spark-run-logged-'));
  });
  after(async () => {
    for (const log of logs) await log.close().catch(() => undefined);
    if (root) await rm(root, { recursive: true, force: true });
  });

  it('merges stderr into stdout at the fd level: lines keep their order and never fuse', async () => {
    const log = await open('order.log');
    const script = 'i=0; while [ $i -lt 300 ]; do echo "out $i"; echo "err $i" >&2; i=$((i+1)); done';
    const outcome = await runLogged({ file: 'sh', args: ['-c', script] }, log, limits());
    await log.close();
    assert.deepEqual(outcome, { stopped: null, exitCode: 0 });
    const lines = (await readFile(log.path, 'utf8')).split('\n').filter((line) => !line.startsWith('[spark-builder]') && line !== '');
    const expected = Array.from({ length: 300 }, (_, i) => [`out ${i}`, `err ${i}`]).flat();
    assert.deepEqual(lines, expected);
  });

  it('returns when the command exits although a background process still holds its output, and ends that process', async () => {
    const log = await open('background.log');
    const pidFile = join(root, 'background.pids');
    const outcome = await runLogged(
      { file: 'sh', args: ['-c', `sleep 600 & echo $! > ${pidFile}; echo "leader done"; exit 3`] },
      log,
      limits({ killGraceMs: 1_000 }),
    );
    await log.close();
    // A relay waiting for the pipe to close would wait for the sleep, past the suite's timeout; one leaving the tree
    // alive fails the last assertion.
    assert.deepEqual(outcome, { stopped: null, exitCode: 3 });
    assert.match(await readFile(log.path, 'utf8'), /leader done/);
    assert.deepEqual(await aliveOf(await pidsIn(pidFile)), []);
  });

  it('closes the pipe and returns when a process that left the tree (setsid) holds the output', async () => {
    const log = await open('escaped.log');
    const pidFile = join(root, 'escaped.pids');
    const outcome = await runLogged(
      { file: 'sh', args: ['-c', `setsid sh -c 'echo $$ > ${pidFile}; exec sleep 20' & sleep 0.3; echo leader done`] },
      log,
      limits(),
    );
    await log.close();
    assert.deepEqual(outcome, { stopped: null, exitCode: 0 });
    assert.match(await readFile(log.path, 'utf8'), /the output pipe stayed open after the command ended/);
    for (const pid of await pidsIn(pidFile)) process.kill(pid, 'SIGKILL');
  });

  it('stops a flood at MaxLogSize: the file holds the cap, the tree is ended, the idle limit cannot be re-armed for ever', async () => {
    const log = await open('flood.log', 1_000_000);
    const pidFile = join(root, 'flood.pids');
    const outcome = await runLogged(
      { file: 'sh', args: ['-c', `sleep 600 & echo $! > ${pidFile}; yes 'a line of output that never ends'`] },
      log,
      limits({ idleOutputTimeoutMs: 2_000 }),
    );
    await log.close();
    assert.equal(outcome.stopped?.kind, 'log-size');
    assert.equal(outcome.stopped?.message, 'the build log reached MaxLogSize (1000000 bytes of output)');
    const text = await readFile(log.path, 'utf8');
    const size = (await stat(log.path)).size;
    assert.ok(size >= 1_000_000 && size < 1_001_000, `log is ${size} bytes`);
    assert.match(text, /\[spark-builder\] stopping the command: the build log reached MaxLogSize/);
    assert.deepEqual(await aliveOf(await pidsIn(pidFile)), []);
  });

  it('a log on a full disk (ENOSPC on a tiny tmpfs) stops the command with the write error instead of hanging it', async () => {
    const mountPoint = join(root, 'tiny');
    await mkdir(mountPoint);
    const unmount = await mountTinyDisk(mountPoint, 256 * 1024);
    try {
      const log = await openJobLog(join(mountPoint, 'full.log'));
      const pidFile = join(root, 'full.pids');
      const outcome = await runLogged(
        { file: 'sh', args: ['-c', `sleep 600 & echo $! > ${pidFile}; while :; do echo "filling the disk"; done`] },
        log,
        limits(),
      );
      // The write error stopped it: a hanging relay would have run into the idle limit ('idle-output') instead.
      assert.equal(outcome.stopped?.kind, 'log-error');
      assert.match(outcome.stopped?.message ?? '', /cannot write the job log .*full\.log: ENOSPC/);
      await assert.rejects(log.close(), /ENOSPC/);
      assert.deepEqual(await aliveOf(await pidsIn(pidFile)), []);
    } finally {
      await unmount();
    }
  });

  it('a log over the file size limit (EFBIG under ulimit -f) stops the command instead of hanging it', async () => {
    const child = fileURLToPath(new URL('./fixtures/efbig-child.ts', import.meta.url));
    const { stdout } = await run(
      'sh',
      ['-c', 'ulimit -f 64; exec "$@"', 'sh', process.execPath, '--conditions=@spark/source', '--import', 'tsx', child, root],
      // Only a guard against a child left running: the child's own idle limit (5 s) ends even a relay that hangs.
      // Far above what node with tsx needs on a busy machine (29 s seen at nice 19 behind two busy loops), under the suite's timeout.
      { timeout: 100_000 },
    );
    const result = JSON.parse(stdout) as { kind: string; message: string; closeError: string; alive: number[] };
    assert.equal(result.kind, 'log-error');
    assert.match(result.message, /EFBIG/);
    assert.match(result.closeError, /EFBIG/);
    assert.deepEqual(result.alive, []);
  });

  it('sends SIGKILL after the grace period to a tree that ignores SIGTERM (idle output)', async () => {
    const log = await open('stubborn.log');
    const pidFile = join(root, 'stubborn.pids');
    const sent: NodeJS.Signals[] = [];
    const started = Date.now();
    const outcome = await runLogged(
      {
        file: 'sh',
        args: ['-c', `trap '' TERM; sleep 600 & echo $! > ${pidFile}; echo started; wait`],
        signalTree: recordingSignals(sent),
      },
      log,
      limits({ idleOutputTimeoutMs: 500, killGraceMs: 1_000 }),
    );
    const seconds = (Date.now() - started) / 1000;
    await log.close();
    assert.equal(outcome.stopped?.kind, 'idle-output');
    assert.deepEqual(sent, ['SIGTERM', 'SIGKILL']);
    // The grace period was given (a lower bound: a slow machine only makes it longer).
    assert.ok(seconds >= 1.4, `stopped after ${seconds} s`);
    assert.deepEqual(await aliveOf(await pidsIn(pidFile)), []);
  });

  for (const [kind, message] of [
    ['cancelled', 'cancelled by operator: test'],
    ['draining', 'the builder is shutting down'],
    ['time-limit', 'job exceeded its time limit of 1 s'],
    ['lock-lost', 'another builder owns the job now'],
  ] as const) {
    it(`a ${kind} stop through the job's signal ends the whole tree`, async () => {
      const log = await open(`${kind}.log`);
      const pidFile = join(root, `${kind}.pids`);
      const stopper = new AbortController();
      // Stopped once it works, with its background process started and written down.
      void lineSeen(log, 'working').then(() => stopper.abort(new JobStop(kind, message)));
      const outcome = await runLogged(
        { file: 'sh', args: ['-c', `sleep 600 & echo $! > ${pidFile}; while :; do echo working; sleep 0.05; done`] },
        log,
        limits({ signal: stopper.signal }),
      );
      await log.close();
      assert.equal(outcome.stopped?.kind, kind);
      assert.match(await readFile(log.path, 'utf8'), new RegExp(`stopping the command: ${message}`));
      const pids = await pidsIn(pidFile);
      assert.equal(pids.length, 1);
      assert.deepEqual(await aliveOf(pids), []);
    });
  }

  for (const [kind, message] of [
    ['cancelled', 'cancelled by operator: helper test'],
    ['draining', 'the builder is shutting down'],
  ] as const) {
    it(`a ${kind} stop reaches a command through its own signalTree, as a privileged helper is stopped: SIGTERM to it alone, it ends what it started`, async () => {
      const log = await open(`helper-${kind}.log`);
      const pidFile = join(root, `helper-${kind}.pids`);
      // The helper's child runs in a session of its own, out of reach of a process-group signal: only the helper can end it.
      const helper = `setsid sleep 600 & child=$!; echo $child > ${pidFile}; trap 'kill $child; exit 143' TERM; while :; do echo working; sleep 0.1; done`;
      const sent: NodeJS.Signals[] = [];
      const stopper = new AbortController();
      // Stopped once it works: its trap is set and its child started.
      void lineSeen(log, 'working').then(() => stopper.abort(new JobStop(kind, message)));
      const outcome = await runLogged(
        {
          file: 'sh',
          args: ['-c', helper],
          signalTree: recordingSignals(sent, (pid, signal) => {
            try {
              process.kill(pid, signal);
            } catch {
              // Gone already.
            }
          }),
        },
        log,
        // The shell runs its trap once its `sleep 0.1` is over: a grace no loaded machine runs out of, so SIGKILL
        // in `sent` means SIGTERM alone did not end the helper, not that the machine was slow.
        limits({ signal: stopper.signal, killGraceMs: 30_000 }),
      );
      await log.close();
      assert.equal(outcome.stopped?.kind, kind);
      assert.deepEqual(sent, ['SIGTERM']);
      const pids = await pidsIn(pidFile);
      assert.equal(pids.length, 1);
      assert.deepEqual(await aliveOf(pids), []);
    });
  }

  it('reports a command that cannot be run with exit code 127 and the reason in the log', async () => {
    const log = await open('missing.log');
    const outcome = await runLogged({ file: '/nonexistent/debspawn', args: ['build'] }, log, limits());
    await log.close();
    assert.deepEqual(outcome, { stopped: null, exitCode: 127 });
    assert.match(await readFile(log.path, 'utf8'), /\/nonexistent\/debspawn: not found/);
  });
});
