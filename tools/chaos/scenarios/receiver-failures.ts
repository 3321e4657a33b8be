import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { chaosChain, emptyResult, workspaceLeft, type ChaosJob, type Scenario } from '../harness.js';
import { waitFor } from '@spark/testing';

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

/** The `.changes` a job's upload ends with (the host runner names it as spark's debspawn does). */
function changesOf(job: ChaosJob): string {
  const data = job.job['data'] as { package_name: string; package_version: string };
  return `${data.package_name}_${data.package_version}_amd64.changes`;
}

/**
 * Scenario 4b: the receiver stores as lkwebupload does (each PUT straight into
 * incoming/<repo>/<name>) and cuts the first PUT of each job's `.changes`
 * part-way, leaving a partial file that every later PUT of it meets with 403.
 * Neither job may end in a reported success on the partial file. For the
 * first, the operator removes the file once a status excerpt at Lighthouse
 * names it: the job then succeeds with every file stored once. The second is
 * left alone: by GiveUpAfter it is reported failed, the excerpt before saying
 * why.
 */
export const receiverPartialFileScenario: Scenario = {
  name: 'receiver-partial-file',
  timeoutMs: 180_000,
  async run(_random, say) {
    const result = emptyResult();
    const giveUpAfter = 30;
    const chaos = await chaosChain({ receiver: { writeInPlace: true }, uploaderToml: `GiveUpAfter = ${giveUpAfter}` });
    try {
      const jobs = await chaos.submit(2, 'partial');
      const [fixed, abandoned] = jobs as [ChaosJob, ChaosJob];
      chaos.chain.receiver.options.failFiles = new Map(jobs.map((job) => [changesOf(job), { cutAfterBytes: 200, times: 1 }]));
      chaos.chain.start();
      const excerpts = (job: ChaosJob) =>
        chaos.requestsOf(job.job.uuid).flatMap((request) => (request.request === 'job-status' ? [String(request['log_excerpt'])] : []));
      const partial = (job: ChaosJob) => `Remove incoming/master/${changesOf(job)} on the archive`;
      await waitFor('an excerpt naming the partial file', () => excerpts(fixed).some((text) => text.includes(partial(fixed))), {
        timeoutMs: 120_000,
      });
      say(`an excerpt names incoming/master/${changesOf(fixed)}; removing it as the operator would`);
      await chaos.waitForEnd([fixed], 120_000, { actAsOperator: true });
      if (chaos.removedByOperator.join() !== `incoming/master/${changesOf(fixed)}`)
        result.problems.push(`the operator removed ${chaos.removedByOperator.join(', ') || 'nothing'}`);
      await chaos.waitForEnd(jobs, 120_000);
      await chaos.verify([fixed], 'job-success', result);

      result.jobs += 1;
      const events = chaos.requestsOf(abandoned.job.uuid).map((request) => String(request.request));
      const terminal = events.filter((event) => event === 'job-success' || event === 'job-failed' || event === 'job-rejected');
      if (terminal.join() !== 'job-failed')
        result.problems.push(`${abandoned.job.uuid}: ended ${terminal.join(',')} (expected job-failed once)`);
      const last = excerpts(abandoned).at(-1) ?? '';
      if (
        !/^spark-uploader: gave up uploading this job's results; reporting it failed:\n/.test(last) ||
        !last.includes(partial(abandoned))
      ) {
        result.problems.push(`${abandoned.job.uuid}: the last excerpt does not say why it failed: ${JSON.stringify(last.slice(0, 300))}`);
      }
      if (!existsSync(join(chaos.chain.uploadsDir, 'master', changesOf(abandoned)))) {
        result.problems.push(`${abandoned.job.uuid}: the partial ${changesOf(abandoned)} is gone from the archive`);
      }
      if (workspaceLeft(chaos.chain.config.workspacesDir, abandoned.job.uuid))
        result.problems.push(`${abandoned.job.uuid}: workspace left behind`);
      const refused = chaos.chain.receiver.requests.filter((request) => request.status === 403).length;
      result.notes.push(`${refused} PUTs refused with 403; the abandoned job failed after GiveUpAfter = ${giveUpAfter} s`);
    } finally {
      await chaos.close();
    }
    return result;
  },
};
