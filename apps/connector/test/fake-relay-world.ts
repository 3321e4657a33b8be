import { excerptShownRecord, handOutRecord, roundEndedRecord, roundEndingRecord } from '@spark/service';
import type { JobRecord, ReportSender } from '@spark/protocol';
import type { RequestBody } from '@spark/lighthouse';
import type { Clock } from '../src/clock.js';
import { PUT_BACK, RELAY_LOCKS, type InboxLocks, type ReportInbox, type ReportOutcome, type TakenReport } from '../src/report-inbox.js';
import type { JobRecords } from '../src/relay-records.js';

/*
 * In-memory stand-ins for what the report relay is given (report-inbox.ts,
 * relay-records.ts, clock.ts), with the behaviour the relay relies on:
 * test/report-inbox.contract.test.ts runs the same cases against these and
 * against BullMQ on a real redis-server.
 *
 * A relay runs as one `Life` of the world: a process that can be killed at
 * any of its steps (each call it makes into the world, once its effect has
 * happened). A killed life's calls never return, its timers never fire, and
 * the report it held stays active until its lock expires, as with a
 * SIGKILLed connector. The world (queues, records, Lighthouse) outlives it,
 * as Redis and Lighthouse do.
 */

const never = <T>(): Promise<T> => new Promise<T>(() => undefined);

interface Timer {
  /** How long the pause was asked to be, in ms. */
  ms: number;
  at: number;
  seq: number;
  fire: () => void;
  /** The real timer behind it, on a running clock. */
  real?: NodeJS.Timeout;
}

/**
 * A clock the test moves. A stopped clock (the default) moves only when told:
 * {@link FakeClock.fireNext} jumps to the next timer and fires it. A
 * {@link FakeClock.running} one goes with the wall clock as well, its pauses
 * ending on real timers, for tests that also wait on real sockets; either
 * moves ahead on {@link FakeClock.advance}, which ends at once the pauses due
 * by then.
 */
export class FakeClock implements Clock {
  private time: number;
  private seq = 0;
  private timers: Timer[] = [];

  constructor(
    start = 1_700_000_000_000,
    private readonly realTime = false,
  ) {
    this.time = realTime ? 0 : start;
  }

  /** A clock that runs with the wall clock (from its time now) until moved ahead. */
  static running(): FakeClock {
    return new FakeClock(0, true);
  }

  now(): number {
    return this.realTime ? Date.now() + this.time : this.time;
  }

  pause(ms: number, signal: AbortSignal): Promise<boolean> {
    if (signal.aborted) return Promise.resolve(false);
    return new Promise((resolve) => {
      const timer: Timer = {
        ms,
        at: this.now() + Math.max(0, ms),
        seq: this.seq++,
        fire: () => {
          signal.removeEventListener('abort', onAbort);
          resolve(true);
        },
      };
      const onAbort = () => {
        this.timers = this.timers.filter((t) => t !== timer);
        clearTimeout(timer.real);
        resolve(false);
      };
      signal.addEventListener('abort', onAbort, { once: true });
      if (this.realTime) timer.real = setTimeout(() => this.fire(timer), Math.max(0, ms));
      this.timers.push(timer);
    });
  }

  private fire(timer: Timer): void {
    this.timers = this.timers.filter((t) => t !== timer);
    clearTimeout(timer.real);
    timer.fire();
  }

  /** Moves the time to `at` (never back). */
  private moveTo(at: number): void {
    if (at > this.now()) this.time += at - this.now();
  }

  /** True while a pause of `ms` runs: what waits that long is waiting now. */
  pausing(ms: number): boolean {
    return this.timers.some((timer) => timer.ms === ms);
  }

  /** Moves the time to the earliest timer and fires it; false when no timer is set. */
  fireNext(): boolean {
    if (this.timers.length === 0) return false;
    const next = this.timers.reduce((a, b) => (b.at < a.at || (b.at === a.at && b.seq < a.seq) ? b : a));
    this.moveTo(next.at);
    this.fire(next);
    return true;
  }

  /** Moves the time `ms` ahead, firing in order the timers due by then, and lets what they woke run. */
  async advance(ms: number): Promise<void> {
    const until = this.now() + ms;
    for (;;) {
      const due = this.timers.filter((t) => t.at <= until);
      if (due.length === 0) break;
      const next = due.reduce((a, b) => (b.at < a.at || (b.at === a.at && b.seq < a.seq) ? b : a));
      this.moveTo(next.at);
      this.fire(next);
      await new Promise((resolve) => setImmediate(resolve));
    }
    this.moveTo(until);
    await new Promise((resolve) => setImmediate(resolve));
  }
}

/** One report in a {@link FakeReportQueue}. */
interface Held {
  life: Life;
  /** When its lock expires; Infinity while its life runs (a running worker renews its lock). */
  lockedUntil: number;
}

/** A sender's report queue as BullMQ keeps it in Redis: outlives every life of the relay. */
export class FakeReportQueue {
  /** Waiting reports, the head (taken next) first. */
  readonly waiting: string[] = [];
  readonly active = new Map<string, Held>();
  /** Reports done with (completed or failed), in the order they were finished. */
  readonly finished: string[] = [];
  /** Those of {@link finished} that failed (their handler threw). */
  readonly failed: string[] = [];
  /** A paused queue keeps its waiting reports waiting: no inbox takes one (BullMQ's `Queue.pause`). */
  paused = false;
  readonly data = new Map<string, unknown>();
  /** Active reports seen at the last stalled check: moved back at the next one if their lock has expired. */
  stalledCandidates = new Set<string>();
  private wakers: Array<() => void> = [];

  constructor(readonly locks: InboxLocks = RELAY_LOCKS) {}

  /** Queues a report at the tail, as `Queue.add` with a job id does: an id the queue keeps already is ignored. */
  add(id: string, data: unknown): void {
    if (this.data.has(id)) return;
    this.data.set(id, data);
    this.waiting.push(id);
    this.wake();
  }

  /** Where a sender adds reports, as its BullMQ queue (@spark/service's JobOutbox): by job id, the payload stored as JSON. */
  outbox(): { add(name: string, data: unknown, options: { jobId: string }): Promise<unknown> } {
    return {
      add: (_name, data, options) => {
        this.add(options.jobId, JSON.parse(JSON.stringify(data ?? null)) as unknown);
        return Promise.resolve();
      },
    };
  }

  pause(): void {
    this.paused = true;
  }

  wake(): void {
    const wakers = this.wakers;
    this.wakers = [];
    for (const waker of wakers) waker();
  }

  waitForChange(): Promise<void> {
    return new Promise((resolve) => this.wakers.push(resolve));
  }

  /** BullMQ's stalled check: reports active at the last check whose lock has expired go back to the head; the active ones are noted for the next. */
  checkStalled(now: number): void {
    for (const id of this.stalledCandidates) {
      const held = this.active.get(id);
      if (held && held.lockedUntil <= now) {
        this.active.delete(id);
        this.waiting.unshift(id);
      }
    }
    this.stalledCandidates = new Set(this.active.keys());
    this.wake();
  }
}

/** A request Lighthouse heard, and which life of the relay sent it. */
export interface Heard {
  body: RequestBody;
  life: number;
}

/** Job records and signer rounds as Redis keeps them. */
export class FakeRecordStore {
  readonly records = new Map<string, JobRecord>();
  readonly signerRounds = new Map<string, string>();
}

/** What one life of the relay is given, and its kill switch. */
export class Life {
  dead = false;
  steps = 0;
  private readonly crashed: Array<() => void> = [];

  constructor(
    readonly number: number,
    private readonly world: FakeRelayWorld,
    /** The step after whose effect this life is killed (none: it runs until closed). */
    private readonly crashAfter?: number,
  ) {}

  /** Runs `effect` as one step of this life: not at all once it is dead, and it dies after it when this is its last step. */
  async step<T>(effect: () => T): Promise<T> {
    if (this.dead) return never();
    const result = effect();
    this.steps += 1;
    if (this.steps === this.crashAfter) this.kill();
    // A step's caller goes on after a round trip, as after one to Redis.
    await this.world.roundTrip();
    if (this.dead) return never();
    return result;
  }

  kill(): void {
    if (this.dead) return;
    this.dead = true;
    const now = this.world.clock.now();
    for (const queue of Object.values(this.world.queues)) {
      for (const held of queue.active.values()) if (held.life === this) held.lockedUntil = now + queue.locks.lockDurationMs;
    }
    for (const crashed of this.crashed) crashed();
  }

  onKill(listener: () => void): void {
    this.crashed.push(listener);
  }

  get clock(): Clock {
    const { clock } = this.world;
    return {
      now: () => clock.now(),
      pause: async (ms, signal) => {
        if (this.dead) return never();
        const result = await clock.pause(ms, signal);
        return this.dead ? never() : result;
      },
    };
  }

  inbox(sender: ReportSender): ReportInbox {
    return new FakeInbox(this.world.queues[sender], this, this.world.clock);
  }

  get records(): JobRecords {
    const store = this.world.records;
    return {
      recordHandOut: (job, at) =>
        this.step(() => {
          const next = handOutRecord(store.records.get(job.uuid.toLowerCase()) ?? null, job, at);
          store.records.set(next.uuid, next);
          return next;
        }),
      read: (uuid) => this.step(() => store.records.get(uuid.toLowerCase()) ?? null),
      signerRound: (uuid) => this.step(() => store.signerRounds.get(uuid.toLowerCase()) ?? null),
      recordEnding: (round) =>
        this.step(() => {
          const next = roundEndingRecord(store.records.get(round.uuid) ?? null, round);
          if (next) store.records.set(round.uuid, next);
        }),
      recordEnd: (round, end, at) =>
        this.step(() => {
          const next = roundEndedRecord(store.records.get(round.uuid) ?? null, round, end, at);
          if (next) store.records.set(round.uuid, next);
        }),
      recordExcerpt: (round, position) =>
        this.step(() => {
          const next = excerptShownRecord(store.records.get(round.uuid) ?? null, round, position);
          if (next) store.records.set(round.uuid, next);
        }),
    };
  }

  /** Lighthouse: hears every request and answers `true` (`job-status` answers are not read). */
  get link(): { request(body: RequestBody): Promise<unknown> } {
    return {
      request: (body) =>
        this.step(() => {
          this.world.heard.push({ body, life: this.number });
          return true;
        }),
    };
  }
}

/** A {@link ReportInbox} on a {@link FakeReportQueue}, for one life. */
class FakeInbox implements ReportInbox {
  private closed = false;
  private running: Promise<void> | null = null;
  private stopWatching = new AbortController();

  constructor(
    private readonly queue: FakeReportQueue,
    private readonly life: Life,
    private readonly clock: FakeClock,
  ) {
    life.onKill(() => queue.wake());
  }

  async watchStalled(): Promise<void> {
    await this.life.step(() => this.queue.checkStalled(this.clock.now()));
    void (async () => {
      while (await this.life.clock.pause(this.queue.locks.stalledIntervalMs, this.stopWatching.signal)) {
        await this.life.step(() => this.queue.checkStalled(this.clock.now()));
      }
    })();
  }

  run(handle: (report: TakenReport) => Promise<ReportOutcome>): Promise<void> {
    this.running = this.loop(handle);
    return this.running;
  }

  private async loop(handle: (report: TakenReport) => Promise<ReportOutcome>): Promise<void> {
    const { queue, life } = this;
    while (!this.closed) {
      if (life.dead) return never();
      // Listening before the look: a report added, or a close, while the look's round trip runs is not missed.
      const changed = queue.waitForChange();
      const id = await life.step(() => {
        const head = queue.paused ? undefined : queue.waiting.shift();
        if (head !== undefined) queue.active.set(head, { life, lockedUntil: Infinity });
        return head;
      });
      if (id === undefined) {
        await changed;
        continue;
      }
      let outcome: ReportOutcome;
      let failed = false;
      try {
        outcome = await handle({ id, data: queue.data.get(id) });
      } catch {
        // A handler that throws fails the report: done with, as a completed one is.
        outcome = 'failed';
        failed = true;
      }
      await life.step(() => {
        queue.active.delete(id);
        if (outcome === PUT_BACK) queue.waiting.unshift(id);
        else queue.finished.push(id);
        if (failed) queue.failed.push(id);
        queue.wake();
      });
    }
  }

  activeCount(): Promise<number> {
    return this.life.step(() => this.queue.active.size);
  }

  state(id: string): Promise<'waiting' | 'active' | 'other'> {
    return this.life.step(() => (this.queue.active.has(id) ? 'active' : this.queue.waiting.includes(id) ? 'waiting' : 'other'));
  }

  pullToHead(id: string): Promise<void> {
    return this.life.step(() => {
      const at = this.queue.waiting.indexOf(id);
      if (at < 0) return;
      this.queue.waiting.splice(at, 1);
      this.queue.waiting.unshift(id);
    });
  }

  holds(id: string): Promise<boolean> {
    return this.life.step(() => this.queue.data.has(id));
  }

  async close(): Promise<void> {
    this.closed = true;
    this.stopWatching.abort();
    this.queue.wake();
    await this.running;
  }
}

/** The queues, records and Lighthouse a relay works on, and the clock; lives of the relay come and go. */
export class FakeRelayWorld {
  readonly records = new FakeRecordStore();
  readonly heard: Heard[] = [];
  readonly queues: Record<ReportSender, FakeReportQueue>;
  private lives = 0;

  /**
   * `roundTrip` is what a step waits for before its caller goes on: a
   * microtask by default (a relay alone with the fake world); a turn of the
   * event loop when real sockets share the process, so a busy queue does not
   * starve their I/O and timers, as Redis round trips would not.
   */
  constructor(
    locks: InboxLocks = RELAY_LOCKS,
    readonly clock: FakeClock = new FakeClock(),
    readonly roundTrip: () => Promise<void> = () => Promise.resolve(),
  ) {
    this.queues = {
      connector: new FakeReportQueue(locks),
      builder: new FakeReportQueue(locks),
      signer: new FakeReportQueue(locks),
      uploader: new FakeReportQueue(locks),
    };
  }

  /** A new life of the relay, killed after its step `crashAfter` if given. */
  life(crashAfter?: number): Life {
    this.lives += 1;
    return new Life(this.lives, this, crashAfter);
  }

  /**
   * Lets everything run that can without time passing, then moves the clock
   * to the next timer, until `done()` holds; throws when nothing is left to
   * run or `limitMs` of clock time have passed.
   */
  async runUntil(done: () => boolean | Promise<boolean>, limitMs = 600_000): Promise<void> {
    const giveUpAt = this.clock.now() + limitMs;
    for (;;) {
      await new Promise((resolve) => setImmediate(resolve));
      if (await done()) return;
      if (this.clock.now() > giveUpAt) throw new Error(`not done after ${limitMs} ms of clock time`);
      if (!this.clock.fireNext()) throw new Error('not done, and nothing left to run');
    }
  }
}
