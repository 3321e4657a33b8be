import { chaosChain, emptyResult, type Scenario } from '../harness.js';

/**
 * Scenario 6: the chain with real debspawn container builds (the `bookworm`
 * image), one job, and the builder killed once mid-build: the job is built
 * again from a clean workspace and uploaded once.
 */
export const debspawnScenario: Scenario = {
  name: 'debspawn',
  timeoutMs: 180_000,
  async run() {
    const result = emptyResult();
    const chaos = await chaosChain({ runner: 'debspawn' });
    try {
      const jobs = await chaos.submit(1, 'debspawn', {}, { reference: false });
      chaos.chain.start();
      await chaos.waitForEnd(jobs, 150_000);
      await chaos.verify(jobs, 'job-success', result);
    } finally {
      await chaos.close();
    }
    return result;
  },
};
