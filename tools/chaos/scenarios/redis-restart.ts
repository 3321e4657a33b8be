import { setTimeout as sleep } from 'node:timers/promises';
import { chaosChain, emptyResult, type Scenario } from '../harness.js';
import { waitFor } from '@spark/testing';

/**
 * Scenario 3: Redis (append-only file, fsync always) goes down while jobs are
 * in every stage — once stopped cleanly and restarted, once killed and left down a while — and comes back on the
 * same port: no job is lost or done twice.
 */
export const redisRestartScenario: Scenario = {
  name: 'redis-restart',
  timeoutMs: 150_000,
  async run(random, say) {
    const result = emptyResult();
    const chaos = await chaosChain({ maxJobs: 2 });
    try {
      const jobs = await chaos.submit(5, 'redis');
      chaos.chain.start();
      const first = jobs[0]?.job.uuid ?? '';
      await waitFor('first job accepted', () => chaos.requestsOf(first).some((request) => request.request === 'job-accepted'), {
        timeoutMs: 30_000,
      });
      await sleep(random.int(500, 2500));
      await chaos.chain.redis.restart();
      say('Redis stopped (SIGTERM) and started again');
      await sleep(random.int(500, 2500));
      await chaos.chain.redis.kill();
      const down = random.int(500, 3000);
      await sleep(down);
      await chaos.chain.redis.restart();
      say(`Redis killed (SIGKILL), down for ${down} ms, started again`);
      result.notes.push(`Redis restarted, then killed and down for ${down} ms`);
      await chaos.waitForEnd(jobs, 100_000);
      const restarted = chaos.ensureRunning();
      if (restarted.length > 0) result.problems.push(`services died: ${restarted.join(', ')}`);
      await chaos.verify(jobs, 'job-success', result);
    } finally {
      await chaos.close();
    }
    return result;
  },
};
