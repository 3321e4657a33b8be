import { readdir, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { chaosChain, emptyResult, type Scenario } from '../harness.js';
import { waitFor } from '@spark/testing';

/**
 * Scenario: Laniakea's own lifecycle. Every job succeeds, then Lighthouse
 * hands each out again under the same uuid (`lk-admin job retry`), while its
 * database answers some reports with `{"error": "Failed to handle request: …"}`.
 * Each job must be built again as a round of its own and end DONE, each
 * round's reports delivered in order (the errors only repeat a request).
 */
export const lifecycleScenario: Scenario = {
  name: 'rehand-out',
  timeoutMs: 180_000,
  async run(random, say) {
    const result = emptyResult();
    const chaos = await chaosChain();
    try {
      const jobs = await chaos.submit(3, 'again');
      const errors = { accepted: random.int(1, 3), success: random.int(1, 3) };
      chaos.chain.standIn.failNext('job-accepted', errors.accepted);
      chaos.chain.start();
      await chaos.waitForEnd(jobs, 90_000);
      // The archive imported the first rounds' uploads (lkwebupload removes them from incoming).
      const incoming = join(chaos.chain.uploadsDir, 'master');
      for (const name of await readdir(incoming).catch(() => [])) await rm(join(incoming, name), { force: true });
      say(`first rounds done; handing all ${jobs.length} out again, ${errors.accepted}+${errors.success} {error} replies`);
      chaos.chain.standIn.failNext('job-success', errors.success);
      for (const job of jobs) chaos.chain.standIn.board.retry(job.job.uuid);
      const successes = (uuid: string) => chaos.requestsOf(uuid).filter((request) => request.request === 'job-success').length;
      await waitFor('every job DONE again', () => jobs.every((job) => chaos.chain.standIn.board.get(job.job.uuid)?.status === 'DONE'), {
        timeoutMs: 120_000,
      });
      for (const job of jobs) {
        const uuid = job.job.uuid;
        const events = chaos
          .requestsOf(uuid)
          .map((request) => String(request.request))
          .filter((request) => request !== 'job-status');
        // A request Lighthouse answered with {error} is asked again: collapse the repeats.
        const delivered = events.filter((event, index) => event !== events[index - 1]);
        result.jobs += 1;
        if (JSON.stringify(delivered) !== JSON.stringify(['job-accepted', 'job-success', 'job-accepted', 'job-success'])) {
          result.problems.push(`${uuid}: reports ${events.join(',')} (expected two rounds of accepted, success)`);
        }
        const entry = chaos.chain.standIn.board.get(uuid);
        if (entry?.result !== 'success') result.problems.push(`${uuid}: ended ${entry?.status} ${entry?.result} at Lighthouse`);
        if (successes(uuid) < 2) result.problems.push(`${uuid}: only ${successes(uuid)} job-success`);
        const files = await readdir(incoming).catch(() => []);
        result.files += files.filter((name) => name.includes(uuid)).length;
        if (!files.some((name) => name === `${uuid}.dud`)) result.problems.push(`${uuid}: the second round uploaded no .dud`);
      }
      result.notes.push(`${jobs.length} jobs built twice; ${errors.accepted + errors.success} {error} replies`);
    } finally {
      await chaos.close();
    }
    return result;
  },
};
