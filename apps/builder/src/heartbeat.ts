import { hostname } from 'node:os';
import type { Logger } from '@spark/service';
import { BUILDER_HEARTBEAT_INTERVAL_MS, builderHeartbeatSchema, type BuilderHeartbeat } from '@spark/protocol';

/** This builder's heartbeat id: `SPARK_BUILDER_ID` (e.g. the systemd instance) or `<hostname>:<pid>`. */
export function builderId(env: NodeJS.ProcessEnv = process.env): string {
  const raw = env['SPARK_BUILDER_ID'] ?? `${hostname()}:${process.pid}`;
  return raw.replace(/[^A-Za-z0-9@._:-]/g, '_').slice(0, 128);
}

/**
 * Where builders' heartbeats are kept for the connector and `spark status`:
 * on Redis, the heartbeats hash and the capacity channel (builder-redis.ts).
 */
export interface HeartbeatBoard {
  /** Writes (replaces) this builder's heartbeat. */
  write(heartbeat: BuilderHeartbeat): Promise<void>;
  /** Removes the heartbeat of builder `id`, so it stops being counted at once. */
  remove(id: string): Promise<void>;
  /** Tells the connector that builder `id` has grown capacity (a slot freed), so it asks Lighthouse at once. */
  announceCapacity(id: string): Promise<void>;
}

/** A running heartbeat. */
export interface Heartbeat {
  /** Writes the heartbeat now (e.g. after the busy count changed). */
  beat(): Promise<void>;
  /** Writes the heartbeat and announces grown capacity (a slot freed), so the connector asks Lighthouse at once. */
  announce(): Promise<void>;
  /** Stops beating and removes the heartbeat, so the connector stops counting this builder at once. */
  stop(): Promise<void>;
}

/**
 * Writes `state()` as this builder's heartbeat (libs/service
 * builder-heartbeats.ts) every {@link BUILDER_HEARTBEAT_INTERVAL_MS}; a
 * builder that dies stops beating, and readers stop counting it once its
 * heartbeat is older than BUILDER_HEARTBEAT_TTL_MS.
 */
export function startHeartbeat(board: HeartbeatBoard, state: () => BuilderHeartbeat, logger: Logger): Heartbeat {
  let stopped = false;
  let failing = false;
  const beat = async () => {
    if (stopped) return;
    const heartbeat = builderHeartbeatSchema.parse(state());
    try {
      await board.write(heartbeat);
      if (failing) logger.info('heartbeat written again');
      failing = false;
    } catch (err) {
      if (!failing) logger.error({ err }, 'cannot write the builder heartbeat; the connector will not send jobs here until Redis is back');
      failing = true;
    }
  };
  const announce = async () => {
    await beat();
    if (stopped || failing) return;
    await board.announceCapacity(state().id).catch((err: unknown) => logger.warn({ err }, 'cannot announce a free slot'));
  };
  const timer = setInterval(() => void beat(), BUILDER_HEARTBEAT_INTERVAL_MS);
  // A builder that registers is capacity the connector should use at once.
  void announce();
  return {
    beat,
    announce,
    async stop() {
      stopped = true;
      clearInterval(timer);
      await board.remove(state().id);
    },
  };
}
