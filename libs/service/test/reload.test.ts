import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { PassThrough } from 'node:stream';
import { after, describe, it } from 'node:test';
import { loadConfig } from '@spark/config';
import { createLogger, reloadConfig, setLogLevel } from '@spark/service';

const dir = mkdtempSync(join(tmpdir(), 'spark-reload-'));
after(() => rmSync(dir, { recursive: true, force: true }));
const minimal = `LighthouseServer = 'tcp://lh.example.org:5570'\nAcceptedJobs = ['package-build']\nGpgKeyID = 'DEADBEEF'\nMachineName = 'm'\n`;

function capture() {
  const stream = new PassThrough();
  const lines: Record<string, unknown>[] = [];
  stream.on('data', (chunk: Buffer) => {
    for (const line of chunk.toString().split('\n').filter(Boolean)) lines.push(JSON.parse(line) as Record<string, unknown>);
  });
  return { lines, logger: createLogger('test', { destination: stream, level: 'info' }) };
}

describe('reloadConfig (SIGHUP)', () => {
  it('writes live keys into the running config, names the rest, and keeps all when the file no longer loads', async () => {
    const file = join(dir, 'spark.toml');
    writeFileSync(file, `${minimal}[connector]\nPollInterval = 5\n`);
    const running = loadConfig(file).config;
    const { lines, logger } = capture();
    writeFileSync(file, `${minimal}MaxJobs = 4\n[connector]\nPollInterval = 0.5\nStartTimeout = 9\n`);
    reloadConfig(running, file, logger, ['connector.pollIntervalMs']);
    assert.equal(running.connector.pollIntervalMs, 500);
    assert.equal(running.maxJobs, 1, 'a restart-only key keeps its running value');
    assert.equal(running.connector.startTimeoutMs, 600_000);
    writeFileSync(file, `${minimal}MaxJobs = 0\n`);
    reloadConfig(running, file, logger, ['connector.pollIntervalMs']);
    assert.equal(running.connector.pollIntervalMs, 500);
    await new Promise((resolve) => setImmediate(resolve));
    assert.deepEqual(
      lines.map((l) => [l['level'], l['msg']]),
      [
        [30, 'SIGHUP: applied [connector] PollInterval'],
        [
          40,
          'SIGHUP: changed keys that apply only after a restart (the running service keeps their old values): MaxJobs, [connector] StartTimeout',
        ],
        [50, `SIGHUP: ${file} cannot be used; keeping the running configuration: ${file}:5: MaxJobs: must be between 1 and 256, got 0`],
      ],
    );
  });

  it('sets a new level on the root logger and on children made before', async () => {
    const { lines, logger } = capture();
    const child = logger.child({ jobId: 'j' });
    const grandchild = child.child({ step: 's' });
    setLogLevel(logger, 'debug');
    child.debug('child debug');
    grandchild.debug('grandchild debug');
    setLogLevel(logger, 'error');
    grandchild.warn('not written');
    await new Promise((resolve) => setImmediate(resolve));
    assert.deepEqual(
      lines.map((l) => l['msg']),
      ['child debug', 'grandchild debug'],
    );
  });
});
