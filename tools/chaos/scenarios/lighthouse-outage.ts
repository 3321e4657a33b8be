import { setTimeout as sleep } from 'node:timers/promises';
import { chaosChain, emptyResult, type Scenario } from '../harness.js';
import { waitFor } from '@spark/testing';

/**
 * Scenario 2: the Lighthouse stand-in goes away for a long spell (many reply
 * timeouts) while the first job builds, and the connector is killed twice
 * meanwhile; then Lighthouse comes back on the same endpoint: every report is
 * delivered afterwards, in order, none twice.
 */
export const lighthouseOutageScenario: Scenario = {
  name: 'lighthouse-outage',
  timeoutMs: 120_000,
  async run(random, say) {
    const result = emptyResult();
    const chaos = await chaosChain();
    try {
      const jobs = await chaos.submit(3, 'outage');
      chaos.chain.start();
      const first = jobs[0]?.job.uuid ?? '';
      await waitFor('first job accepted', () => chaos.requestsOf(first).some((request) => request.request === 'job-accepted'), {
        timeoutMs: 30_000,
      });
      chaos.chain.stopLighthouse();
      const spell = random.int(12_000, 18_000);
      say(`Lighthouse down for ${spell} ms; the connector killed twice meanwhile`);
      // Reports pile up in flight meanwhile; killing the connector must not drop the one it holds.
      const kills = [random.int(2_000, 5_000), random.int(2_000, 5_000)];
      for (const pause of kills) {
        await sleep(pause);
        await chaos.chain.stop('connector', 'SIGKILL');
        chaos.chain.start('connector');
      }
      await sleep(Math.max(0, spell - kills[0]! - kills[1]!));
      const heardDuringOutage = chaos.chain.lighthouseRequests().length;
      await chaos.chain.startLighthouse();
      await chaos.waitForEnd(jobs, 60_000);
      result.notes.push(`outage of ${spell} ms; ${chaos.chain.lighthouseRequests().length - heardDuringOutage} requests after it`);
      await chaos.verify(jobs, 'job-success', result);
    } finally {
      await chaos.close();
    }
    return result;
  },
};
