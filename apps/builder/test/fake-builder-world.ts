import type { SparkConfig } from '@spark/config';
import type { BuilderHeartbeat } from '@spark/protocol';
import { once, type Clock, type Logger } from '@spark/service';
import { FakeQueue } from '@spark/testing';
import { createBuilder, type Builder, type BuilderDeps } from '../src/builder.js';
import type { HeartbeatBoard } from '../src/heartbeat.js';

/*
 * What the builder meets on Redis, in memory: the `build`, `sign` and report
 * queues (@spark/testing's FakeQueue, held to BullMQ's behaviour by
 * libs/service's stage-queues.contract.test.ts), the heartbeats hash and the
 * operator control channel (held to Redis's by builder-world.contract.test.ts).
 * builder-redis.test.ts runs the builder on the real ones.
 */

/** The builders' heartbeats as the connector would read them, and the capacity announcements. */
export class FakeHeartbeatBoard implements HeartbeatBoard {
  private readonly beats = new Map<string, BuilderHeartbeat>();
  /** The builder ids that announced a free slot, in order. */
  readonly announced: string[] = [];

  /** Builder `id`'s heartbeat, or undefined once removed (or never written). */
  get(id: string): BuilderHeartbeat | undefined {
    return this.beats.get(id);
  }

  write(heartbeat: BuilderHeartbeat): Promise<void> {
    // Stored as JSON, as in the Redis hash.
    this.beats.set(heartbeat.id, JSON.parse(JSON.stringify(heartbeat)) as BuilderHeartbeat);
    return Promise.resolve();
  }

  remove(id: string): Promise<void> {
    this.beats.delete(id);
    return Promise.resolve();
  }

  announceCapacity(id: string): Promise<void> {
    this.announced.push(id);
    return Promise.resolve();
  }
}

/** The builder control channel: what a test publishes reaches every builder listening, as on Redis pub/sub. */
export class FakeControlChannel {
  private readonly listeners = new Set<(message: string) => void>();

  /** Publishes `message` (as `spark cancel` does) to the builders listening now. */
  publish(message: string): void {
    for (const listener of [...this.listeners]) listener(message);
  }

  /** One builder's subscription; `close` ends it (its Redis connection quits). */
  subscription(): BuilderDeps['control'] & { close(): void } {
    let listening: ((message: string) => void) | null = null;
    return {
      listen: (onMessage) => {
        listening = onMessage;
        this.listeners.add(onMessage);
        return Promise.resolve();
      },
      close: () => {
        if (listening) this.listeners.delete(listening);
      },
    };
  }
}

/** A clock the test sets: `time` ms since the epoch. */
export interface TestClock extends Clock {
  time: number;
}

/** A {@link TestClock} at `time`. */
export function testClock(time: number): TestClock {
  const clock: TestClock = { time, now: () => clock.time };
  return clock;
}

/** The queues, heartbeats and control channel the builders of a test share. */
export class FakeBuilderWorld {
  readonly buildQueue = new FakeQueue();
  readonly signQueue = new FakeQueue();
  readonly reportQueue = new FakeQueue();
  readonly heartbeats = new FakeHeartbeatBoard();
  readonly control = new FakeControlChannel();

  /** @param clock The builders' clock (default: a {@link TestClock} at 2026-11-30 12:00 UTC). */
  constructor(readonly clock: Clock = testClock(Date.UTC(2026, 10, 30, 12, 0, 0))) {}

  /**
   * A builder on this world, as createBuilderOnRedis makes one on Redis: its
   * own worker of the `build` queue (taking up to `MaxJobs` jobs at once) and
   * control subscription; its `close` drains it, then ends the subscription.
   */
  builder(config: SparkConfig, logger: Logger, options: Pick<BuilderDeps, 'debspawn' | 'killGraceMs' | 'id'> = {}): Builder {
    const subscription = this.control.subscription();
    const builder = createBuilder({
      config,
      logger,
      clock: this.clock,
      buildJobs: this.buildQueue.lockingInbox(config.maxJobs),
      signs: this.signQueue,
      reports: this.reportQueue,
      heartbeats: this.heartbeats,
      control: subscription,
      ready: () => Promise.resolve(),
      ...options,
    });
    return {
      id: builder.id,
      start: () => builder.start(),
      close: once(() => builder.close().then(() => subscription.close())),
    };
  }
}
