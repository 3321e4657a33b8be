import { setTimeout as sleep } from 'node:timers/promises';
import type { ServiceName } from '../../src/chain/chain.js';
import { chaosChain, emptyResult, type Scenario } from '../harness.js';
import { waitFor } from '@spark/testing';

const SERVICES: readonly ServiceName[] = ['connector', 'builder', 'signer', 'uploader'];

/**
 * Scenario 1: `kill -9` of a random service at a random moment, again and
 * again while jobs flow; the test restarts it after a random pause. Every
 * service is killed at least once, and then one build twice in a row. Every
 * job must still end in exactly one success, with its files uploaded exactly
 * once.
 */
export const killScenario: Scenario = {
  name: 'kill-9',
  timeoutMs: 240_000,
  async run(random, say) {
    const result = emptyResult();
    const chaos = await chaosChain();
    try {
      const jobs = await chaos.submit(8, 'kill');
      chaos.chain.start();
      const victims = [...SERVICES, ...Array.from({ length: 10 }, () => random.pick(SERVICES))];
      const kills: string[] = [];
      for (const victim of victims) {
        await sleep(random.int(300, 2500));
        await chaos.chain.stop(victim, 'SIGKILL');
        kills.push(victim);
        await sleep(random.int(100, 1500));
        chaos.chain.start(victim);
      }
      // The same build killed twice in a row: it must be resumed each time, not dropped.
      const starts = () => chaos.logs.filter((line) => line.startsWith('builder: ') && line.includes('"msg":"job accepted"')).length;
      const before = starts();
      const target = await chaos.submit(1, 'kill-twice');
      jobs.push(...target);
      const uuid = target[0]?.job.uuid ?? '';
      for (let round = 1; round <= 2; round++) {
        await waitFor(
          `build ${round} of ${uuid}`,
          () =>
            chaos.logs.filter((line) => line.startsWith('builder: ') && line.includes(uuid) && line.includes('"msg":"job accepted"'))
              .length >= round,
          { timeoutMs: 90_000 },
        );
        await sleep(random.int(100, 600));
        await chaos.chain.stop('builder', 'SIGKILL');
        kills.push('builder');
        chaos.chain.start('builder');
      }
      say(`killed ${kills.join(', ')} (the last two during the same build; ${starts() - before} builds started meanwhile)`);
      result.notes.push(`${kills.length} kills: ${kills.join(' ')}`);
      // A kill between the archive storing a file and the uploader recording it leaves a file the archive refuses
      // to take again (lkwebupload cannot tell a whole copy from a partial one, nor can the uploader): the job
      // waits, saying which file to remove, and the operator removes it.
      await chaos.waitForEnd(jobs, 150_000, { actAsOperator: true });
      if (chaos.removedByOperator.length > 0) {
        say(`removed as the operator would: ${chaos.removedByOperator.join(', ')}`);
        result.notes.push(`operator removed ${chaos.removedByOperator.length} file(s)`);
      }
      const restarted = chaos.ensureRunning();
      if (restarted.length > 0) result.problems.push(`services died on their own: ${restarted.join(', ')}`);
      await chaos.verify(jobs, 'job-success', result);
    } finally {
      await chaos.close();
    }
    return result;
  },
};
