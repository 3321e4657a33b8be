import { chaosChain, emptyResult, retireWhenRejected, workspaceLeft, type Scenario } from '../harness.js';

/** Size of the workspace tmpfs; the big package's source alone is larger. */
const WORKSPACE_BYTES = 2 * 1024 * 1024;

/**
 * Scenario 4b: the workspace is a 2 MiB tmpfs and a job's source does not
 * fit: the job is given back to Lighthouse with the disk-full reason, its
 * partial files are removed, and the builder goes on to build the next job.
 * Lighthouse hands the job out again; it is tried and given back again.
 */
export const diskFullScenario: Scenario = {
  name: 'disk-full',
  timeoutMs: 120_000,
  async run(random, say) {
    const result = emptyResult();
    const chaos = await chaosChain({ workspaceSizeBytes: WORKSPACE_BYTES });
    try {
      // Incompressible filler, so the source tarball stays larger than the disk.
      const filler = Buffer.alloc(3 * 1024 * 1024);
      for (let i = 0; i < filler.length; i++) filler[i] = random.int(0, 255);
      const cSource = `/* ${filler.toString('base64')} */\nint main(void) { return 0; }\n`;
      const [big] = await chaos.submit(1, 'big', { cSource });
      const small = await chaos.submit(2, 'small');
      if (!big) throw new Error('no big job');
      chaos.chain.start();
      // Lighthouse hands a rejected job out again: the second hand-out must be tried (and refused) again, not dropped.
      const rejections = await retireWhenRejected(chaos, big.job.uuid, 60_000, 2);
      await chaos.waitForEnd(small, 60_000);
      say(`big job rejected ${rejections} time(s); small jobs done`);
      const events = chaos.requestsOf(big.job.uuid).map((request) => String(request.request));
      if (events.includes('job-success') || events.includes('job-failed')) result.problems.push(`the big job ended ${events.join(',')}`);
      const reason = chaos.logs.find(
        (line) => line.includes(big.job.uuid) && /no space left on device.*; rejecting it back to Lighthouse/i.test(line),
      );
      if (!reason) result.problems.push('no builder log line gives "no space left on device" as the reason of the rejection');
      else
        result.notes.push(`reason: ${(JSON.parse(reason.slice(reason.indexOf('{'))) as { reason?: string }).reason ?? ''}`.slice(0, 200));
      if (workspaceLeft(chaos.chain.config.workspacesDir, big.job.uuid)) result.problems.push('the big job left its workspace behind');
      result.jobs += 1;
      if (!chaos.chain.running('builder')) result.problems.push('the builder died');
      await chaos.verify(small, 'job-success', result);
    } finally {
      await chaos.close();
    }
    return result;
  },
};
