import {
  BUILDER_HEARTBEAT_TTL_MS,
  builderHeartbeatSchema,
  type BuilderHeartbeat,
  type LighthouseStatus,
  type StoredArchiveTargets,
} from '@spark/protocol';
import { BUILDER_HEARTBEAT_PRUNE_MS } from '@spark/service';
import { FakeQueue } from '@spark/testing';
import type { BuilderBoard } from '../src/builder-capacity.js';
import type { Clock } from '../src/clock.js';
import type { LockStore } from '../src/connector-lock.js';
import type { KindBlockStore } from '../src/kind-blocks.js';
import type { LighthouseNotes } from '../src/lighthouse-notes.js';
import { FakeClock, FakeRelayWorld } from './fake-relay-world.js';

/*
 * In-memory stand-ins for what the connector keeps in Redis besides its
 * report queues (those are fake-relay-world.ts's): the builders' heartbeats
 * and announcements, the kind blocks, the notes about Lighthouse, the
 * connector lock. test/connector-redis.contract.test.ts runs the same cases
 * against these and against the Redis ones on a real redis-server.
 */

/** Copies `value` as Redis stores it: as JSON. */
const asStored = <T>(value: T): T => JSON.parse(JSON.stringify(value)) as T;

/** The builders' heartbeats and capacity announcements, as builders write them into Redis. */
export class FakeBuilderBoard implements BuilderBoard {
  private readonly beats = new Map<string, BuilderHeartbeat>();
  private readonly listeners: (() => void)[] = [];
  private readers: (() => void)[] = [];
  /** How often the heartbeats were read (the job fetcher reads them once per look at capacity). */
  reads = 0;

  /** Writes (replaces) a builder's heartbeat, as the builder does. */
  beat(heartbeat: BuilderHeartbeat): void {
    this.beats.set(heartbeat.id, asStored(builderHeartbeatSchema.parse(heartbeat)));
  }

  /** Announces capacity on the channel, as a builder does when a slot frees or it registers. */
  announce(): void {
    for (const listener of this.listeners) listener();
  }

  /** Resolves at the next read of the heartbeats. */
  nextRead(): Promise<void> {
    return new Promise((resolve) => this.readers.push(resolve));
  }

  heartbeats(now: number): Promise<BuilderHeartbeat[]> {
    this.reads += 1;
    const readers = this.readers;
    this.readers = [];
    for (const reader of readers) reader();
    const live: BuilderHeartbeat[] = [];
    for (const [id, beat] of this.beats) {
      if (now - beat.at < BUILDER_HEARTBEAT_TTL_MS) live.push(asStored(beat));
      else if (now - beat.at >= BUILDER_HEARTBEAT_PRUNE_MS) this.beats.delete(id);
    }
    return Promise.resolve(live.sort((a, b) => a.id.localeCompare(b.id)));
  }

  listen(listener: () => void): Promise<void> {
    this.listeners.push(listener);
    return Promise.resolve();
  }
}

/** The kind blocks, one entry per kind. */
export class FakeKindBlocks implements KindBlockStore {
  readonly entries = new Map<string, string>();

  all(): Promise<Record<string, string>> {
    return Promise.resolve(Object.fromEntries(this.entries));
  }

  set(kind: string, entry: string): Promise<void> {
    this.entries.set(kind, entry);
    return Promise.resolve();
  }

  remove(kind: string): Promise<void> {
    this.entries.delete(kind);
    return Promise.resolve();
  }
}

/** The upload targets and the link's state, as the connector notes them for the others. */
export class FakeLighthouseNotes implements LighthouseNotes {
  targets: StoredArchiveTargets | null = null;
  status: LighthouseStatus | null = null;

  storeTargets(targets: StoredArchiveTargets): Promise<void> {
    this.targets = asStored(targets);
    return Promise.resolve();
  }

  storedTargets(): Promise<StoredArchiveTargets | null> {
    return Promise.resolve(this.targets && asStored(this.targets));
  }

  noteStatus(status: LighthouseStatus): Promise<void> {
    this.status = asStored(status);
    return Promise.resolve();
  }
}

/** A lock that expires on `clock` unless renewed, as a Redis key with an expiry. */
export class FakeLockStore implements LockStore {
  readonly name = 'connector-lock';
  private held: { holder: string; until: number } | null = null;

  constructor(private readonly clock: Clock) {}

  private current(): { holder: string; until: number } | null {
    if (this.held && this.held.until <= this.clock.now()) this.held = null;
    return this.held;
  }

  take(holder: string, ttlMs: number): Promise<boolean> {
    if (this.current()) return Promise.resolve(false);
    this.held = { holder, until: this.clock.now() + ttlMs };
    return Promise.resolve(true);
  }

  holder(): Promise<string | null> {
    return Promise.resolve(this.current()?.holder ?? null);
  }

  renew(holder: string, ttlMs: number): Promise<boolean> {
    const held = this.current();
    if (held?.holder !== holder) return Promise.resolve(false);
    held.until = this.clock.now() + ttlMs;
    return Promise.resolve(true);
  }

  release(holder: string): Promise<void> {
    if (this.current()?.holder === holder) this.held = null;
    return Promise.resolve();
  }
}

/**
 * Everything a connector keeps in Redis, in memory: the pipeline queues, the
 * report queues and job records (a {@link FakeRelayWorld}), the builders,
 * kind blocks, notes and lock, all on one running {@link FakeClock}. Several
 * connectors can share it, as they share a host's Redis.
 */
export class FakeConnectorStore {
  readonly clock = FakeClock.running();
  readonly relay = new FakeRelayWorld(undefined, this.clock, () => new Promise((resolve) => setImmediate(resolve)));
  readonly build = new FakeQueue(this.clock);
  readonly sign = new FakeQueue(this.clock);
  readonly upload = new FakeQueue(this.clock);
  readonly builders = new FakeBuilderBoard();
  readonly kindBlocks = new FakeKindBlocks();
  readonly notes = new FakeLighthouseNotes();
  readonly lock = new FakeLockStore(this.clock);
}
