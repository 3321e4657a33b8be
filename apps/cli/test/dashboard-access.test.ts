import assert from 'node:assert/strict';
import { chmod, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { createLogger } from '@spark/service';
import { tokenFileProblem } from '../src/dashboard/dashboard-command.js';
import { startDashboard } from '../src/dashboard/dashboard.js';

/*
 * Who may reach the queue dashboard: what `startDashboard` and the token file
 * check refuse before any Redis is dialled (the URL below is never used).
 * dashboard.test.ts serves real queues.
 */

const logger = createLogger('dashboard-test');
const hosts = [{ label: 'h', url: 'redis://127.0.0.1:1', prefix: 'spark' }];

describe('queue dashboard access', () => {
  let dir: string;
  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'spark-dashboard-token-'));
  });
  after(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  it('refuses to listen beyond loopback without a token', async () => {
    await assert.rejects(
      startDashboard({ hosts, bind: '0.0.0.0', port: 0, logger }),
      /refusing to serve the dashboard on 0\.0\.0\.0 without a token/,
    );
  });

  it('refuses to serve read-write without a token, also on loopback', async () => {
    await assert.rejects(
      startDashboard({ hosts, port: 0, readWrite: true, logger }),
      /refusing to serve a read-write dashboard without a token/,
    );
  });

  it('takes a token file only when it is the caller’s and no one else can read it', async () => {
    const file = join(dir, 'token');
    await writeFile(file, 'a-token\n', { mode: 0o644 });
    assert.match(tokenFileProblem(file) ?? '', /readable or writable by others \(mode 644\)/);
    await chmod(file, 0o600);
    assert.equal(tokenFileProblem(file), null);
    assert.match(tokenFileProblem(file, 12345) ?? '', /belongs to uid \d+, not to the user running the dashboard \(12345\)/);
    assert.match(tokenFileProblem(dir) ?? '', /is not a regular file/);
  });
});
