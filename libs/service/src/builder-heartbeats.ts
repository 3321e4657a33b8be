import type { Redis } from 'ioredis';
import { BUILDER_HEARTBEAT_TTL_MS, builderHeartbeatSchema, builderHeartbeatsKey, type BuilderHeartbeat } from '@spark/protocol';

/*
 * The builders' heartbeats live in one hash (`builderHeartbeatsKey`), one
 * field per builder, so that the connector and `spark status` find them
 * without listing key names: no Redis user of a service may SCAN. A hash
 * field has no TTL of its own (HEXPIRE needs Redis 7.4; Debian 12 has 7.0),
 * so a heartbeat counts while its `at` is younger than
 * BUILDER_HEARTBEAT_TTL_MS, and a reader allowed to write removes the fields
 * of builders long gone.
 */

/** How long after its last beat a gone builder's field is removed, in ms (6 × BUILDER_HEARTBEAT_TTL_MS, 1 min). */
export const BUILDER_HEARTBEAT_PRUNE_MS = 6 * BUILDER_HEARTBEAT_TTL_MS;

/** Writes (replaces) one builder's heartbeat. */
export async function writeBuilderHeartbeat(redis: Redis, prefix: string, heartbeat: BuilderHeartbeat): Promise<void> {
  await redis.hset(builderHeartbeatsKey(prefix), heartbeat.id, JSON.stringify(heartbeat));
}

/** Removes one builder's heartbeat, so it stops being counted at once (a builder that stops). */
export async function removeBuilderHeartbeat(redis: Redis, prefix: string, id: string): Promise<void> {
  await redis.hdel(builderHeartbeatsKey(prefix), id);
}

/** Options of {@link readBuilderHeartbeats}. */
export interface ReadHeartbeatsOptions {
  /** ms since the epoch (default now). */
  now?: number;
  /**
   * Remove the fields of builders silent for {@link BUILDER_HEARTBEAT_PRUNE_MS}
   * and malformed ones (default false; needs write access to the hash).
   */
  prune?: boolean;
  /** Called for each malformed field, with its builder id (a field a broken or hostile builder wrote). */
  onMalformed?: (id: string, error: unknown) => void;
}

/** The heartbeats of the live builders: well-formed, and beaten within BUILDER_HEARTBEAT_TTL_MS. */
export async function readBuilderHeartbeats(
  redis: Redis,
  prefix: string,
  options: ReadHeartbeatsOptions = {},
): Promise<BuilderHeartbeat[]> {
  const now = options.now ?? Date.now();
  const fields = await redis.hgetall(builderHeartbeatsKey(prefix));
  const live: BuilderHeartbeat[] = [];
  const gone: string[] = [];
  for (const [id, text] of Object.entries(fields)) {
    let beat: BuilderHeartbeat;
    try {
      beat = builderHeartbeatSchema.parse(JSON.parse(text));
    } catch (error) {
      options.onMalformed?.(id, error);
      gone.push(id);
      continue;
    }
    if (now - beat.at < BUILDER_HEARTBEAT_TTL_MS) live.push(beat);
    else if (now - beat.at >= BUILDER_HEARTBEAT_PRUNE_MS) gone.push(id);
  }
  if (options.prune && gone.length > 0) await redis.hdel(builderHeartbeatsKey(prefix), ...gone);
  return live.sort((a, b) => a.id.localeCompare(b.id));
}
