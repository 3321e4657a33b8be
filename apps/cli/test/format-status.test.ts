import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import type { HostStatus } from '../src/status/collect-status.js';
import { formatDuration, formatStatus } from '../src/status/format-status.js';
import { assessHealth, worstCode } from '../src/status/health.js';
import type { HostReport } from '../src/status/status-command.js';
import { hostStatus, jobInFlight, MIN, NOW, UUID } from './host-status.js';

/*
 * The text of `spark status`, from host reports built by hand; status.test.ts
 * checks that the command reads those reports from Redis.
 */

/** What `spark status` prints for `host`, with its health as the command assesses it. */
function text(host: HostStatus): string {
  const problems = assessHealth(host, undefined, NOW);
  const report: HostReport = { ...host, health: { exitCode: worstCode(problems.map((p) => p.code)), problems } };
  return formatStatus([report], NOW);
}

describe('spark status text', () => {
  it('says durations in the largest two units', () => {
    assert.deepEqual([12_000, 185_000, 3_720_000, 50 * 3600_000].map(formatDuration), ['12s', '3m 05s', '1h 02m', '2d 2h']);
  });

  it('shows an upload that is retrying: what fails, when the next try is, and when it gives up', () => {
    const host = hostStatus({
      jobs: [
        jobInFlight({
          stage: 'upload',
          state: 'delayed',
          ageMs: 10 * MIN,
          upload: {
            phase: 'retrying',
            problem:
              'the archive holds a possibly partial hello_1.0-1_amd64.deb: … Remove incoming/master/hello_1.0-1_amd64.deb on the archive',
            tries: 3,
            firstTryAt: NOW - 10 * MIN,
            nextTryAt: NOW + 125_000,
            giveUpAt: NOW + 2 * 3600_000,
          },
        }),
      ],
    });
    assert.match(
      text(host),
      new RegExp(
        `\n  ${UUID} {2}upload/delayed {2}10m 00s\n {4}retrying: try 3 failed: the archive holds a possibly partial hello_1\\.0-1_amd64\\.deb: … ` +
          `Remove incoming/master/hello_1\\.0-1_amd64\\.deb on the archive; next try in 2m 05s, gives up and reports the job failed in 2h 00m\n`,
      ),
    );
  });

  it('shows an upload sending a file, and which of how many', () => {
    const host = hostStatus({
      jobs: [
        jobInFlight({
          stage: 'upload',
          state: 'active',
          ageMs: 30_000,
          upload: {
            phase: 'uploading',
            file: 'hello_1.0-1_amd64.deb',
            fileNumber: 2,
            files: 5,
            tries: 1,
            firstTryAt: NOW - 30_000,
            giveUpAt: NOW + 6 * 3600_000,
          },
        }),
      ],
    });
    assert.match(
      text(host),
      /\n {4}uploading hello_1\.0-1_amd64\.deb \(file 2 of 5, try 1\); gives up and reports the job failed in 6h 00m\n/,
    );
  });

  it('shows a sign job that waits for disk space: since when, what it could not write, the next try, when it gives up; stuck after 15 min', () => {
    const host = hostStatus({
      jobs: [
        jobInFlight({
          stage: 'sign',
          state: 'delayed',
          ageMs: 20 * MIN,
          sign: {
            phase: 'disk-full',
            problem: 'the workspace disk is full (ENOSPC: no space left on device, write)',
            tries: 4,
            since: NOW - 75_000,
            nextTryAt: NOW + 40_000,
            giveUpAt: NOW + 3 * 3600_000,
          },
        }),
      ],
    });
    const shown = text(host);
    assert.match(
      shown,
      new RegExp(
        `\n  ${UUID} {2}sign/delayed {2}20m 00s\n {4}waiting for disk space since 1m 15s ago: the workspace disk is full \\(ENOSPC: no space left on device, write\\); ` +
          `next try in 40s, gives up and reports the job failed in 3h 00m\n`,
      ),
    );
    assert.match(
      shown,
      new RegExp(
        `\nhealth: exit 3:\n {2}stuck: ${UUID} in sign, delayed for 20m 00s: the workspace disk is full \\(ENOSPC: no space left on device, write\\)\n`,
      ),
    );
  });

  it('shows a failed job with its reason, and a host it could not read', () => {
    const host = hostStatus({
      jobs: [
        jobInFlight({ stage: 'sign', state: 'failed', ageMs: MIN, attemptsMade: 1, failedReason: 'signer refused the build results' }),
      ],
    });
    assert.match(text(host), new RegExp(`\n  ${UUID} {2}sign/failed {2}1m 00s {2}\\(attempts 1\\) — signer refused the build results\n`));
    const unreachable: HostReport = {
      redis: 'helium redis://helium:6379',
      prefix: 'spark',
      error: 'Redis connection closed: connect ECONNREFUSED',
      unreadable: ['everything'],
      health: { exitCode: 69, problems: [] },
    };
    assert.equal(
      formatStatus([unreachable], NOW),
      "== helium redis://helium:6379 (prefix spark)\ncannot read this host's Redis: Redis connection closed: connect ECONNREFUSED\nhealth: exit 69: Redis unreachable\n",
    );
  });
});
