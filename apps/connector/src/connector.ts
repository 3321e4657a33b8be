import type { SparkConfig } from '@spark/config';
import { once, runCloseSteps, type JobOutbox, type Logger, type SettledFeed, type WatchedQueue } from '@spark/service';
import type { ReportSender } from '@spark/protocol';
import { backoffDelay, createLighthouseLink, DEFAULT_BACKOFF, type Backoff, type ConnectorKeys } from '@spark/lighthouse';
import { refreshArchiveTargets } from './archive-targets.js';
import type { BuilderBoard } from './builder-capacity.js';
import type { Clock } from './clock.js';
import { acquireConnectorLock, type ConnectorLock, type LockStore } from './connector-lock.js';
import { runJobFetcher } from './job-fetcher.js';
import type { KindBlockStore } from './kind-blocks.js';
import type { LighthouseNotes } from './lighthouse-notes.js';
import type { JobRecords } from './relay-records.js';
import type { ReportInbox } from './report-inbox.js';
import { startReportRelay, type ReportRelay } from './report-relay.js';
import { runStartTimeout } from './start-timeout.js';
import { createWaker } from './waker.js';

/**
 * What {@link createConnector} needs. main.ts opens the Redis-backed parts
 * (connector-redis.ts); unit tests hand in-memory ones.
 */
export interface ConnectorDeps {
  config: SparkConfig;
  keys: ConnectorKeys;
  logger: Logger;
  clock: Clock;
  /** `build`: where a handed-out job goes, and whose unstarted jobs are taken back after `StartTimeout`. */
  buildQueue: JobOutbox & WatchedQueue;
  /** `sign` and `upload`, counted against capacity. */
  signQueue: WatchedQueue;
  uploadQueue: WatchedQueue;
  /** Hears uploads end: no builder announces that, yet it can make room (builder-capacity.ts). */
  uploadsSettled: SettledFeed;
  /** The connector's own report queue (the relay reads it as `inboxes.connector`). */
  reports: JobOutbox;
  /** Each sender's report queue, as the relay reads it. */
  inboxes: Readonly<Record<ReportSender, ReportInbox>>;
  records: JobRecords;
  builders: BuilderBoard;
  kindBlocks: KindBlockStore;
  notes: LighthouseNotes;
  /** The one-connector-per-Redis lock. */
  lock: LockStore;
  /** Resolves once Redis answers. */
  ready(): Promise<void>;
  /** Backoff while Lighthouse is unreachable (default 0.5 s doubling to 30 s). */
  backoff?: Backoff;
  /** Cool-down of a job this worker rejected (default `[connector] RejectedCooldown`, doubling to 30 min). */
  rejectionCooldown?: Backoff;
  /** Called when a background loop fails unexpectedly; main makes it fatal (systemd restarts us). */
  onFatal: (error: unknown) => void;
}

/** The connector service. */
export interface Connector {
  /** Waits for Redis and to be the one connector on it, starts the report relay, asks `archive-info`, then asks for jobs while builders have room. */
  start(): Promise<void>;
  /** Stops asking for jobs, lets the relay finish its report in flight, closes Lighthouse. Safe to call twice. */
  close(): Promise<void>;
}

/** Builds the connector from its config, keys and the queues and records it is handed. */
export function createConnector(deps: ConnectorDeps): Connector {
  const { config, logger, clock } = deps;
  const settings = config.connector;
  const backoff = deps.backoff ?? DEFAULT_BACKOFF;
  const waker = createWaker(clock);
  const link = createLighthouseLink({
    endpoint: config.lighthouseServer,
    keys: deps.keys,
    identity: { machine_name: config.machineName, machine_id: config.machineId },
    replyTimeoutMs: settings.replyTimeoutMs,
    backoff,
    serverKeyFile: config.lighthouseServerKeyFile,
    logger,
    onStatus: (status) => {
      deps.notes.noteStatus(status).catch(() => undefined);
    },
  });
  const stop = new AbortController();
  const loops: Promise<void>[] = [];
  let relay: ReportRelay | null = null;
  let lock: ConnectorLock | null = null;

  const background = (name: string, loop: () => Promise<void>) => {
    loops.push(
      loop().catch((error: unknown) => {
        if (stop.signal.aborted) return;
        logger.fatal({ err: error, loop: name }, `${name} failed`);
        deps.onFatal(error);
      }),
    );
  };

  return {
    async start() {
      await deps.ready();
      lock = await acquireConnectorLock(deps.lock, clock, logger, stop.signal, (error) => {
        logger.fatal({ err: error }, 'lost the connector lock: another connector runs on this Redis');
        deps.onFatal(error);
      });
      if (!lock) return;
      // Builders announce freed slots; jobs past their build count against capacity beyond one per
      // slot, and no builder announces when an upload ends: either makes a waiting worker ask at once.
      await deps.builders.listen(() => waker.wake());
      await deps.uploadsSettled.listen(() => waker.wake());
      relay = startReportRelay({ link, inboxes: deps.inboxes, records: deps.records, clock, backoff, logger });
      background('upload targets and job fetching', async () => {
        const now = () => clock.now();
        // Upload targets must be known before a job is taken (docs/architecture.md, The pipeline).
        for (let tries = 0; !(await refreshArchiveTargets(link, deps.notes, now, logger, stop.signal)); tries++) {
          // A refused or malformed answer is often a moment's trouble at Lighthouse: ask again
          // with backoff rather than idling a whole refresh interval without taking jobs.
          if (!(await clock.pause(Math.min(backoffDelay(backoff, tries), settings.archiveInfoIntervalMs), stop.signal))) return;
        }
        background('archive-info refresh', async () => {
          while (await clock.pause(settings.archiveInfoIntervalMs, stop.signal)) {
            await refreshArchiveTargets(link, deps.notes, now, logger, stop.signal).catch((error: unknown) => {
              if (!stop.signal.aborted) logger.error({ err: error }, 'cannot refresh the upload targets');
            });
          }
        });
        await runJobFetcher(
          {
            link,
            clock,
            buildQueue: deps.buildQueue,
            signQueue: deps.signQueue,
            uploadQueue: deps.uploadQueue,
            reports: deps.reports,
            builders: deps.builders,
            records: deps.records,
            kindBlocks: deps.kindBlocks,
            notes: deps.notes,
            logger,
            acceptedJobs: config.acceptedJobs,
            architectures: config.architectures,
            owner: config.machineOwner,
            // Read at each pause: SIGHUP writes a new PollInterval into the config (startService's liveKeys).
            get pollIntervalMs() {
              return settings.pollIntervalMs;
            },
            giveUpRejectedAfterMs: settings.giveUpRejectedAfterMs,
            waker,
            rejectionCooldown: deps.rejectionCooldown ?? {
              initialMs: settings.rejectedCooldownMs,
              maxMs: Math.max(settings.rejectedCooldownMs, 30 * 60_000),
            },
            backoff,
          },
          stop.signal,
        );
      });
      background('start timeout', () =>
        runStartTimeout(
          deps.buildQueue,
          deps.reports,
          settings.startTimeoutMs,
          Math.max(50, Math.min(settings.startTimeoutMs / 4, 10_000)),
          clock,
          logger,
          stop.signal,
        ),
      );
      logger.info({ server: config.lighthouseServer, machine: config.machineName, machineId: config.machineId }, 'connector started');
    },
    close: once(async () => {
      stop.abort();
      await runCloseSteps(
        [
          ['stop asking for jobs', () => Promise.all(loops)],
          ['finish the report in flight', () => relay?.close()],
          ['close the Lighthouse link', () => link.close()],
          ['release the connector lock', () => lock?.release()],
        ],
        logger,
      );
    }),
  };
}
