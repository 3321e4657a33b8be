import { median, percentile } from '@spark/testing';
import { startChain } from '../src/chain/chain.js';
import { chainJobs, clearUploads, now, requestIndex, untilPolling, untilSuccess, type Prebuilt } from './chain-jobs.js';

/**
 * Per-job overhead: `count` jobs one after another through the whole chain
 * with the no-op runner, hand-out (the `job` request that got the job) →
 * `job-success` at the stand-in, after two warm-up jobs. Baseline: building
 * the same tiny package with the host runner (dpkg-buildpackage), measured
 * while prebuilding.
 */
export async function benchJobOverhead(prebuilt: Prebuilt, count: number): Promise<string[]> {
  const chain = await startChain({ runner: 'noop' });
  try {
    chain.start();
    await untilPolling(chain);
    const specs = Array.from(
      { length: count + 2 },
      (_, i) => prebuilt.specs[i % prebuilt.specs.length] ?? { name: 'bench0', version: '1.0' },
    );
    const overhead: number[] = [];
    for (const [i, spec] of specs.entries()) {
      // Made just before it is added: remaking a package changes its .dsc, and an earlier job's checksum with it.
      const [job] = await chainJobs(chain, [spec]);
      if (!job) continue;
      const from = chain.standIn.requests.length;
      chain.standIn.addJob(job);
      const done = await untilSuccess(chain, job.uuid, from);
      const handOut = requestIndex(chain, from, (r) => r.request === 'job' && r['machine_name'] === chain.config.machineName);
      await clearUploads(chain);
      if (i >= 2) overhead.push((chain.standIn.receivedAt[done] ?? NaN) - (chain.standIn.receivedAt[handOut] ?? NaN));
    }
    const build = median(prebuilt.buildSeconds) * 1000;
    return [
      `per-job overhead (hand-out → job-success, no-op runner), ${count} jobs: median ${median(overhead).toFixed(0)} ms, p95 ${percentile(overhead, 95).toFixed(0)} ms; ×${(median(overhead) / build).toFixed(2)} of one host-runner build of the same package (${build.toFixed(0)} ms)`,
    ];
  } finally {
    await chain.close();
  }
}

/**
 * Throughput with 1, 2 and 4 builder slots (`MaxJobs`): every prebuilt package
 * put on the board at once, from the first addJob to the last `job-success`;
 * one warm-up job, then `runs` batches, median. Baseline: one slot.
 */
export async function benchThroughput(prebuilt: Prebuilt, slots: readonly number[], runs: number): Promise<string[]> {
  const results: { slots: number; perMinute: number; seconds: number[] }[] = [];
  for (const maxJobs of slots) {
    const chain = await startChain({ runner: 'noop', maxJobs });
    try {
      chain.start();
      await untilPolling(chain);
      const [warmUp] = await chainJobs(chain, prebuilt.specs.slice(0, 1));
      if (warmUp) {
        chain.standIn.addJob(warmUp);
        await untilSuccess(chain, warmUp.uuid, 0);
        await clearUploads(chain);
      }
      const seconds: number[] = [];
      for (let run = 0; run < runs; run++) {
        const jobs = await chainJobs(chain, prebuilt.specs);
        const from = chain.standIn.requests.length;
        const start = now();
        for (const job of jobs) chain.standIn.addJob(job);
        let last = start;
        for (const job of jobs) last = Math.max(last, chain.standIn.receivedAt[await untilSuccess(chain, job.uuid, from)] ?? NaN);
        seconds.push((last - start) / 1000);
        await clearUploads(chain);
      }
      results.push({ slots: maxJobs, seconds, perMinute: (prebuilt.specs.length / median(seconds)) * 60 });
    } finally {
      await chain.close();
    }
  }
  const one = results[0]?.perMinute ?? NaN;
  return [
    `throughput, ${prebuilt.specs.length} jobs at once (no-op runner), median of ${runs} batches: ${results
      .map(
        (r) =>
          `MaxJobs ${r.slots}: ${r.perMinute.toFixed(0)} jobs/min (×${(r.perMinute / one).toFixed(2)} of MaxJobs 1; batches ${r.seconds.map((s) => s.toFixed(1)).join(' ')} s)`,
      )
      .join('; ')}`,
  ];
}
