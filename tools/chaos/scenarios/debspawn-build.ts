import { setTimeout as sleep } from 'node:timers/promises';
import { chaosChain, emptyResult, type Scenario } from '../harness.js';
import { waitFor } from '@spark/testing';

/**
 * Scenario 6: the chain with real debspawn container builds (the `bookworm`
 * image), two jobs, and the builder killed (`kill -9`) once while the first
 * one builds in its container: that job is built again from a clean
 * workspace, and each job is uploaded once.
 */
export const debspawnScenario: Scenario = {
  name: 'debspawn',
  timeoutMs: 240_000,
  async run(random, say) {
    const result = emptyResult();
    const chaos = await chaosChain({ runner: 'debspawn' });
    try {
      const jobs = await chaos.submit(2, 'debspawn', {}, { reference: false });
      chaos.chain.start();
      const first = jobs[0]?.job.uuid ?? '';
      await waitFor('first job accepted', () => chaos.requestsOf(first).some((request) => request.request === 'job-accepted'), {
        timeoutMs: 60_000,
      });
      const delay = random.int(2_000, 5_000);
      await sleep(delay);
      await chaos.chain.stop('builder', 'SIGKILL');
      say(`builder killed ${delay} ms into the first container build`);
      chaos.chain.start('builder');
      await chaos.waitForEnd(jobs, 200_000);
      await chaos.verify(jobs, 'job-success', result);
    } finally {
      await chaos.close();
    }
    return result;
  },
};
