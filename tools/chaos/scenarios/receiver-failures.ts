import { chaosChain, emptyResult, type Scenario } from '../harness.js';

/**
 * Scenario 4a: the upload receiver answers every other PUT with 503: the
 * uploader retries, and every file ends up stored exactly once.
 */
export const receiverFailuresScenario: Scenario = {
  name: 'receiver-50%',
  timeoutMs: 120_000,
  async run() {
    const result = emptyResult();
    const chaos = await chaosChain({ receiver: { failFraction: 0.5 } });
    try {
      const jobs = await chaos.submit(4, 'receiver');
      chaos.chain.start();
      await chaos.waitForEnd(jobs, 90_000);
      const failures = chaos.chain.receiver.requests.filter((request) => request.status === 503).length;
      result.notes.push(`${failures} PUTs answered 503 of ${chaos.chain.receiver.requests.length}`);
      if (failures === 0) result.problems.push('the receiver failed no request');
      await chaos.verify(jobs, 'job-success', result);
    } finally {
      await chaos.close();
    }
    return result;
  },
};
