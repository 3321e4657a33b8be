import { setTimeout as sleep } from 'node:timers/promises';
import { Request } from 'zeromq';
import type { SparkConfig } from '@spark/config';
import { readKeyFile } from '@spark/keys';

/** The least a Lighthouse worker can do: poll on one CURVE REQ socket and accept at once. */
export interface IdealPoller {
  /** Polls `job` every `intervalMs` while idle; answers a hand-out with `job-accepted` straight away. */
  poll(intervalMs: number): void;
  /** Stops polling after the request in flight. */
  stopPolling(): Promise<void>;
  /** Sends `count` `job` requests back to back (no job waiting: each is answered `null`) and returns each round trip in ms. */
  roundTrips(count: number): Promise<number[]>;
  close(): void;
}

/**
 * The baseline of the pickup benchmark: a client in the benchmark's own
 * process, on the chain's worker keys, with no queue, Redis or builder behind
 * it, under its own `machine_name` so its requests can be counted apart.
 */
export async function openIdealPoller(config: SparkConfig, machineName: string): Promise<IdealPoller> {
  const worker = await readKeyFile(config.curveSecretKeyFile);
  const server = await readKeyFile(config.lighthouseServerKeyFile);
  const socket = new Request({
    linger: 0,
    relaxed: true,
    curveServerKey: server.curvePublicKey ?? undefined,
    curvePublicKey: worker.curvePublicKey ?? undefined,
    curveSecretKey: worker.curveSecretKey ?? undefined,
  });
  socket.connect(config.lighthouseServer);
  const identity = { machine_name: machineName, machine_id: '00000000-0000-5000-8000-000000000000' };
  const ask = async (body: Record<string, unknown>): Promise<unknown> => {
    await socket.send(JSON.stringify({ ...body, ...identity }));
    const [frame] = await socket.receive();
    const text = frame?.toString('utf8') ?? '';
    return text === '' ? undefined : (JSON.parse(text) as unknown);
  };
  const jobRequest = { request: 'job', owner: config.machineOwner, accepts: config.acceptedJobs, architectures: config.architectures };
  let polling: Promise<void> | null = null;
  let stop = false;
  return {
    poll(intervalMs) {
      stop = false;
      polling = (async () => {
        while (!stop) {
          const reply = await ask(jobRequest);
          const uuid = reply !== null && typeof reply === 'object' ? (reply as { uuid?: unknown }).uuid : undefined;
          if (typeof uuid === 'string') await ask({ request: 'job-accepted', uuid });
          else await sleep(intervalMs);
        }
      })();
    },
    async stopPolling() {
      stop = true;
      await polling;
      polling = null;
    },
    async roundTrips(count) {
      const times: number[] = [];
      for (let i = 0; i < count; i++) {
        const start = performance.now();
        await ask(jobRequest);
        times.push(performance.now() - start);
      }
      return times;
    },
    close: () => socket.close(),
  };
}
