import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import type { HostStatus } from '../src/status/collect-status.js';
import { assessHealth, DEFAULT_STUCK_LIMITS, worstCode } from '../src/status/health.js';
import { hostStatus as host, jobInFlight as job, MIN, NOW, UUID } from './host-status.js';

/*
 * The rules behind `spark status`'s exit code, on host reports built by hand:
 * status.test.ts checks that the command reads them from Redis and
 * exits with the code.
 */

const messages = (status: HostStatus) =>
  assessHealth(status, DEFAULT_STUCK_LIMITS, NOW).map((problem) => `${problem.code} ${problem.message}`);

describe('spark status health rules', () => {
  it('finds nothing wrong with a live builder, a recent Lighthouse reply and jobs moving', () => {
    assert.deepEqual(messages(host({ jobs: [job({ ageMs: 2 * MIN }), job({ stage: 'sign', state: 'active', ageMs: MIN })] })), []);
  });

  it('takes the Lighthouse link for down on an outage, on no contact recorded, and on 15 min of silence', () => {
    assert.deepEqual(
      messages(
        host({
          lighthouse: { server: 'tcp://l:5570', lastContactAt: NOW - MIN, outageSince: NOW - 90_000, lastError: 'no reply within 30 s' },
        }),
      ),
      ['5 Lighthouse link: outage for 1m 30s: no reply within 30 s'],
    );
    assert.deepEqual(messages(host({ lighthouse: null })), ['5 Lighthouse link: no contact recorded (is spark-connector running?)']);
    assert.deepEqual(
      messages(host({ lighthouse: { server: 'tcp://l:5570', lastContactAt: NOW - 16 * MIN, outageSince: null, lastError: null } })),
      ['5 Lighthouse link: last reply 16m 00s ago (is spark-connector running?)'],
    );
  });

  it('says why each kind of job is stuck', () => {
    const stuck = 16 * MIN;
    assert.deepEqual(
      messages(
        host({
          jobs: [
            job({ stage: 'build', state: 'waiting', ageMs: stuck }),
            job({ stage: 'upload', state: 'waiting', ageMs: stuck }),
            job({ stage: 'build', state: 'active', ageMs: 24 * 60 * MIN + stuck }),
            job({ stage: 'sign', state: 'active', ageMs: stuck }),
          ],
        }),
      ),
      [
        `3 stuck: ${UUID} in build, waiting for 16m 00s: no builder takes it`,
        `3 stuck: ${UUID} in upload, waiting for 16m 00s: spark-uploader does not take it`,
        `3 stuck: ${UUID} in build, building for 24h 16m, past MaxBuildTime (24h 00m): the builder should have stopped it`,
        `3 stuck: ${UUID} in sign, being signed for 16m 00s`,
      ],
    );
  });

  it('lets an upload retry until its GiveUpAfter, then counts it stuck', () => {
    const retrying = (giveUpAt: number) =>
      job({
        stage: 'upload',
        state: 'delayed',
        ageMs: 2 * 60 * MIN,
        upload: {
          phase: 'retrying',
          problem: 'the archive answered 502',
          tries: 9,
          firstTryAt: NOW - 2 * 60 * MIN,
          nextTryAt: NOW + MIN,
          giveUpAt,
        },
      });
    assert.deepEqual(messages(host({ jobs: [retrying(NOW + 60 * MIN)] })), []);
    assert.deepEqual(messages(host({ jobs: [retrying(NOW - 20 * MIN)] })), [
      `3 stuck: ${UUID} in upload, delayed for 2h 00m: spark-uploader does not take it`,
    ]);
  });

  it("counts a sign job waiting for disk space stuck after 15 min, with the signer's reason", () => {
    const waiting = (ageMs: number) =>
      job({
        stage: 'sign',
        state: 'delayed',
        ageMs,
        sign: {
          phase: 'disk-full',
          problem: 'the workspace disk is full (ENOSPC: no space left on device, write)',
          tries: 6,
          since: NOW - ageMs,
          nextTryAt: NOW + MIN,
          giveUpAt: NOW + 5 * 60 * MIN,
        },
      });
    assert.deepEqual(messages(host({ jobs: [waiting(10 * MIN)] })), []);
    assert.deepEqual(messages(host({ jobs: [waiting(20 * MIN)] })), [
      `3 stuck: ${UUID} in sign, delayed for 20m 00s: the workspace disk is full (ENOSPC: no space left on device, write)`,
    ]);
  });

  it('lists every problem worst first, and the exit code is the worst over all hosts', () => {
    const problems = assessHealth(host({ lighthouse: null, builders: [], jobs: [job({ ageMs: 16 * MIN })] }), DEFAULT_STUCK_LIMITS, NOW);
    assert.deepEqual(
      problems.map((problem) => problem.code),
      [5, 4, 3],
    );
    assert.equal(worstCode([3, 4]), 4);
    assert.equal(worstCode([3, 69, 5]), 69);
    assert.equal(worstCode([]), 0);
  });
});
