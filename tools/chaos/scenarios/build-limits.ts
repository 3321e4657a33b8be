import { readdir, readFile, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { chaosChain, emptyResult, type Scenario } from '../harness.js';

/** Processes still alive (zombies are dead) whose command line is exactly `argv`. */
async function processesRunning(argv: readonly string[]): Promise<number[]> {
  const wanted = `${argv.join('\0')}\0`;
  const found: number[] = [];
  for (const entry of await readdir('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    const cmdline = await readFile(`/proc/${entry}/cmdline`, 'utf8').catch(() => '');
    if (cmdline !== wanted) continue;
    const state = await readFile(`/proc/${entry}/stat`, 'utf8').catch(() => '');
    if (!/^\d+ \(.*\) Z/.test(state)) found.push(Number(entry));
  }
  return found;
}

/**
 * Scenario 7a: builds that leave a process behind holding the output pipe
 * (`sleep N &` in debian/rules): the build's leader exits, the builder ends
 * the tree instead of waiting for the pipe, the jobs succeed well before the
 * sleep would end, and no sleep is left running.
 */
export const hungPipeScenario: Scenario = {
  name: 'hung-pipe',
  timeoutMs: 150_000,
  async run(random, say) {
    const result = emptyResult();
    const seconds = String(random.int(5_000, 9_000));
    const chaos = await chaosChain();
    try {
      // No reference build: it would wait for the pipe as long as the sleep runs.
      const jobs = await chaos.submit(2, 'hungpipe', { buildCommands: [`sleep ${seconds} &`] }, { reference: false });
      const started = Date.now();
      chaos.chain.start();
      await chaos.waitForEnd(jobs, 120_000);
      say(`both jobs ended in ${((Date.now() - started) / 1000).toFixed(1)} s; each build left a 'sleep ${seconds}' holding its output`);
      await chaos.verify(jobs, 'job-success', result);
      const left = await processesRunning(['sleep', seconds]);
      if (left.length > 0) result.problems.push(`'sleep ${seconds}' still running after the jobs ended: pids ${left.join(', ')}`);
      if (!chaos.chain.running('builder')) result.problems.push('the builder died');
    } finally {
      await chaos.close();
    }
    return result;
  },
};

/** MaxLogSize of the flood scenario's builder, in bytes. */
const FLOOD_CAP = 3_000_000;

/**
 * Scenario 7b: a build that floods its log for ever (`yes` in debian/rules)
 * under `MaxLogSize = 3000000`: the builder stops it at the cap, the job ends
 * `job-failed` with the capped log in its `.dud`, and the next job builds.
 */
export const logFloodScenario: Scenario = {
  name: 'log-flood',
  timeoutMs: 150_000,
  async run(_random, say) {
    const result = emptyResult();
    const chaos = await chaosChain({ builderToml: `MaxLogSize = ${FLOOD_CAP}` });
    try {
      const flood = await chaos.submit(1, 'flood', { buildCommands: ['yes "flooding the build log"'] }, { reference: false });
      const after = await chaos.submit(1, 'after-flood');
      chaos.chain.start();
      await chaos.waitForEnd([...flood, ...after], 120_000);
      await chaos.verify(flood, 'job-failed', result);
      await chaos.verify(after, 'job-success', result);
      for (const { job } of flood) {
        const log = join(chaos.chain.uploadsDir, 'master', `${job.uuid}.log`);
        const size = await stat(log).then(
          (info) => info.size,
          () => null,
        );
        if (size === null) result.problems.push(`${job.uuid}: its log was not uploaded`);
        else if (size < FLOOD_CAP || size > FLOOD_CAP + 64 * 1024)
          result.problems.push(`${job.uuid}: log of ${size} bytes for a cap of ${FLOOD_CAP}`);
        else say(`flooding job stopped with a log of ${size} bytes (cap ${FLOOD_CAP})`);
        const text = size === null ? '' : await readFile(log, 'utf8');
        if (size !== null && !/stopping the command: the build log reached MaxLogSize/.test(text)) {
          result.problems.push(`${job.uuid}: the log does not say why the build was stopped`);
        }
      }
      const left = await processesRunning(['yes', 'flooding the build log']);
      if (left.length > 0) result.problems.push(`the flooding 'yes' still runs: pids ${left.join(', ')}`);
    } finally {
      await chaos.close();
    }
    return result;
  },
};
