import { setTimeout as sleep } from 'node:timers/promises';
import { median, percentile } from '@spark/testing';
import { startChain, type Chain } from '../src/chain/chain.js';
import type { StandInJob } from '@spark/testing';
import type { RecordedRequest } from '@spark/testing';
import { openIdealPoller } from './ideal-poller.js';
import { chainJobs, clearUploads, now, requestIndex, untilPolling, untilSuccess, type Prebuilt } from './chain-jobs.js';

const POLLER = 'ideal-poller';
const ms = (value: number) => `${value.toFixed(0)} ms`;
/** Requests per second from `machineName` that arrived in [from, to] (epoch ms). */
function rate(chain: Chain, machineName: string, from: number, to: number): number {
  const { requests, receivedAt } = chain.standIn;
  const count = requests.filter(
    (r, i) => r['machine_name'] === machineName && (receivedAt[i] ?? 0) >= from && (receivedAt[i] ?? 0) <= to,
  ).length;
  return count / ((to - from) / 1000);
}

/** Counts both pollers' requests over `seconds` while neither has work. */
async function idleRates(chain: Chain, seconds: number): Promise<{ ours: number; ideal: number }> {
  const from = now();
  await sleep(seconds * 1000);
  const to = now();
  return { ours: rate(chain, chain.config.machineName, from, to), ideal: rate(chain, POLLER, from, to) };
}

/**
 * Idle worker: request rate to Lighthouse and pickup latency against an ideal
 * poller (ideal-poller.ts) on the same stand-in. `samples` timed pickups after
 * one warm-up. The services' idle RSS: idle-rss.ts.
 */
/**
 * Adds `job` at the stand-in and waits until a worker accepts it. Returns the
 * index of the first request recorded after the add, the time of the add, and
 * the index of the `job-accepted` request.
 */
async function addUntilAccepted(chain: Chain, job: StandInJob): Promise<{ from: number; added: number; accepted: number }> {
  const from = chain.standIn.requests.length;
  const added = now();
  chain.standIn.addJob(job);
  const isAccepted = (r: RecordedRequest) => r.request === 'job-accepted' && r['uuid'] === job.uuid;
  await chain.standIn.waitFor((requests) => requests.slice(from).some(isAccepted), 60_000);
  return { from, added, accepted: requestIndex(chain, from, isAccepted) };
}

export async function benchIdleWorker(prebuilt: Prebuilt, samples: number): Promise<string[]> {
  const out: string[] = [];
  const pollMs = 200;

  // Part 1: the chain's PollInterval (0.2 s), where the worker's own reaction time is visible.
  let chain = await startChain({ runner: 'noop', pollInterval: pollMs / 1000 });
  try {
    chain.start();
    await untilPolling(chain);
    const poller = await openIdealPoller(chain.config, POLLER);
    try {
      poller.poll(pollMs);
      await sleep(2000);
      const fast = await idleRates(chain, 10);
      await poller.stopPolling();
      out.push(
        `idle request rate at PollInterval 0.2 s: ${fast.ours.toFixed(2)}/s, ideal poller ${fast.ideal.toFixed(2)}/s (×${(fast.ours / fast.ideal).toFixed(2)})`,
      );

      const specs = Array.from(
        { length: samples + 1 },
        (_, i) => prebuilt.specs[i % prebuilt.specs.length] ?? { name: 'bench0', version: '1.0' },
      );
      const pickup: number[] = [];
      const reaction: number[] = [];
      // Jobs are made just before they are added: remaking a package changes its .dsc, and an earlier job's checksum with it.
      for (const [i, spec] of specs.entries()) {
        const [job] = await chainJobs(chain, [spec]);
        if (!job) continue;
        await sleep(Math.random() * pollMs);
        const { from, added, accepted } = await addUntilAccepted(chain, job);
        // The stand-in answers each request as it records it, so the first job request recorded after addJob got the job.
        const handOut = requestIndex(chain, from, (r) => r.request === 'job' && r['machine_name'] === chain.config.machineName);
        await untilSuccess(chain, job.uuid, from);
        await clearUploads(chain);
        if (i === 0) continue;
        pickup.push((chain.standIn.receivedAt[accepted] ?? NaN) - added);
        reaction.push((chain.standIn.receivedAt[accepted] ?? NaN) - (chain.standIn.receivedAt[handOut] ?? NaN));
      }

      await chain.stop('connector');
      poller.poll(pollMs);
      const idealPickup: number[] = [];
      for (const spec of specs.slice(0, samples)) {
        const [job] = await chainJobs(chain, [spec]);
        if (!job) continue;
        await sleep(Math.random() * pollMs);
        const { added, accepted } = await addUntilAccepted(chain, job);
        idealPickup.push((chain.standIn.receivedAt[accepted] ?? NaN) - added);
      }
      await poller.stopPolling();
      const rtt = await poller.roundTrips(200);
      out.push(
        `pickup latency (job added → job-accepted), PollInterval 0.2 s, ${samples} jobs: median ${ms(median(pickup))}, p95 ${ms(percentile(pickup, 95))}; ideal poller median ${ms(median(idealPickup))}, p95 ${ms(percentile(idealPickup, 95))} (×${(median(pickup) / median(idealPickup)).toFixed(2)} median, ×${(percentile(pickup, 95) / percentile(idealPickup, 95)).toFixed(2)} p95)`,
        `  of which hand-out → job-accepted (the worker's own reaction): median ${ms(median(reaction))}, p95 ${ms(percentile(reaction, 95))}; bare CURVE REQ round trip median ${median(rtt).toFixed(2)} ms (×${(median(reaction) / median(rtt)).toFixed(0)})`,
      );
      poller.close();
    } catch (error) {
      poller.close();
      throw error;
    }
  } finally {
    await chain.close();
  }

  // Part 2: the default PollInterval (5 s), as a worker runs in production.
  chain = await startChain({ runner: 'noop', pollInterval: 5 });
  try {
    chain.start();
    await untilPolling(chain);
    const poller = await openIdealPoller(chain.config, POLLER);
    try {
      poller.poll(5000);
      await sleep(3000);
      const slow = await idleRates(chain, 30);
      await poller.stopPolling();
      out.push(
        `idle request rate at PollInterval 5 s (default): ${slow.ours.toFixed(2)}/s, ideal poller ${slow.ideal.toFixed(2)}/s (×${(slow.ours / slow.ideal).toFixed(2)}), over 30 s`,
      );
    } finally {
      poller.close();
    }
  } finally {
    await chain.close();
  }
  return out;
}
