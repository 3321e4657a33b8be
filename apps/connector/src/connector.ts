import type { Queue } from 'bullmq';
import type { SparkConfig } from '@spark/config';
import { connectRedis, once, openQueue, openQueueEvents, redisLogin, redisReady, runCloseSteps, type Logger } from '@spark/service';
import { builderCapacityChannel, lighthouseStatusKey, QueueName, REPORT_QUEUES, REPORT_SENDERS, type ReportSender } from '@spark/protocol';
import { refreshArchiveTargets } from './archive-targets.js';
import { runJobFetcher } from './job-fetcher.js';
import { startReportRelay, type ReportRelay } from './report-relay.js';
import { bullmqReportInbox } from './report-inbox.js';
import { redisRelayRecords } from './relay-records.js';
import { systemClock } from './clock.js';
import { acquireConnectorLock, type ConnectorLock } from './connector-lock.js';
import { createWaker } from './waker.js';
import { runStartTimeout } from './start-timeout.js';
import { backoffDelay, createLighthouseLink, DEFAULT_BACKOFF, pause, type Backoff, type ConnectorKeys } from '@spark/lighthouse';

/** What {@link createConnector} needs. */
export interface ConnectorDeps {
  config: SparkConfig;
  keys: ConnectorKeys;
  logger: Logger;
  /** Backoff while Lighthouse is unreachable (default 0.5 s doubling to 30 s). */
  backoff?: Backoff;
  /** Cool-down of a job this worker rejected (default `[connector] RejectedCooldown`, doubling to 30 min). */
  rejectionCooldown?: Backoff;
  /** Called when a background loop fails unexpectedly; main makes it fatal (systemd restarts us). */
  onFatal: (error: unknown) => void;
}

/** The connector service. */
export interface Connector {
  /** Connects Redis, waits to be the one connector on it, starts the report relay, asks `archive-info`, then asks for jobs while builders have room. */
  start(): Promise<void>;
  /** Stops asking for jobs, lets the relay finish its report in flight, closes Lighthouse and Redis. Safe to call twice. */
  close(): Promise<void>;
}

/** Builds the connector from its config and keys. */
export function createConnector(deps: ConnectorDeps): Connector {
  const { config, logger } = deps;
  const settings = config.connector;
  const backoff = deps.backoff ?? DEFAULT_BACKOFF;
  const prefix = config.queuePrefix;
  // A job Lighthouse handed out must reach the build queue even if Redis is restarting:
  // this connection waits for Redis (queues commands) rather than failing fast.
  const login = redisLogin(config.redisCredentialsDir, 'connector');
  const producer = connectRedis(config.redisUrl, 'worker', login);
  const workerConnection = connectRedis(config.redisUrl, 'worker', login);
  // Builders announce freed slots on a pub/sub channel: a connection in subscriber mode of its own.
  const subscriber = connectRedis(config.redisUrl, 'worker', login);
  subscriber.on('error', (err) => logger.error({ err }, 'Redis connection error (capacity announcements)'));
  const waker = createWaker();
  subscriber.on('message', () => waker.wake());
  producer.on('error', (err) => logger.error({ err }, 'Redis connection error'));
  workerConnection.on('error', (err) => logger.error({ err }, 'Redis connection error (report relay)'));
  const buildQueue = openQueue(QueueName.build, producer, prefix, logger);
  const signQueue = openQueue(QueueName.sign, producer, prefix, logger);
  const uploadQueue = openQueue(QueueName.upload, producer, prefix, logger);
  // Jobs past their build count against capacity beyond one per slot (builder-capacity.ts), and no
  // builder announces when an upload ends: hear it from the upload queue's events (a connection of
  // their own, duplicated from the producer's) so a worker held back by uploads asks at once too.
  const uploadEvents = openQueueEvents(QueueName.upload, producer, prefix, logger);
  uploadEvents.on('completed', () => waker.wake());
  uploadEvents.on('failed', () => waker.wake());
  // The relay reads every sender's report queue; the connector's own reports go to its own.
  const reportQueues = Object.fromEntries(
    REPORT_SENDERS.map((sender) => [sender, openQueue(REPORT_QUEUES[sender], producer, prefix, logger)]),
  ) as Record<ReportSender, Queue>;
  const reportQueue = reportQueues.connector;
  const link = createLighthouseLink({
    endpoint: config.lighthouseServer,
    keys: deps.keys,
    identity: { machine_name: config.machineName, machine_id: config.machineId },
    replyTimeoutMs: settings.replyTimeoutMs,
    backoff,
    serverKeyFile: config.lighthouseServerKeyFile,
    logger,
    onStatus: (status) => {
      producer.set(lighthouseStatusKey(prefix), JSON.stringify(status)).catch(() => undefined);
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
      await redisReady(producer);
      lock = await acquireConnectorLock(producer, prefix, logger, stop.signal, (error) => {
        logger.fatal({ err: error }, 'lost the connector lock: another connector runs on this Redis');
        deps.onFatal(error);
      });
      if (!lock) return;
      await subscriber.subscribe(builderCapacityChannel(prefix));
      const inbox = (sender: ReportSender) =>
        bullmqReportInbox(REPORT_QUEUES[sender], reportQueues[sender], workerConnection, prefix, logger);
      const inboxes = { connector: inbox('connector'), builder: inbox('builder'), signer: inbox('signer'), uploader: inbox('uploader') };
      relay = startReportRelay({
        link,
        inboxes,
        records: redisRelayRecords(workerConnection, prefix),
        clock: systemClock,
        backoff,
        logger,
      });
      background('upload targets and job fetching', async () => {
        // Upload targets must be known before a job is taken (docs/architecture.md, The pipeline).
        for (let tries = 0; !(await refreshArchiveTargets(link, producer, prefix, logger, stop.signal)); tries++) {
          // A refused or malformed answer is often a moment's trouble at Lighthouse: ask again
          // with backoff rather than idling a whole refresh interval without taking jobs.
          if (!(await pause(Math.min(backoffDelay(backoff, tries), settings.archiveInfoIntervalMs), stop.signal))) return;
        }
        background('archive-info refresh', async () => {
          while (await pause(settings.archiveInfoIntervalMs, stop.signal)) {
            await refreshArchiveTargets(link, producer, prefix, logger, stop.signal).catch((error: unknown) => {
              if (!stop.signal.aborted) logger.error({ err: error }, 'cannot refresh the upload targets');
            });
          }
        });
        await runJobFetcher(
          {
            link,
            redis: producer,
            prefix,
            buildQueue,
            signQueue,
            uploadQueue,
            reportQueue,
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
          buildQueue,
          reportQueue,
          settings.startTimeoutMs,
          Math.max(50, Math.min(settings.startTimeoutMs / 4, 10_000)),
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
          [
            'close queues',
            () =>
              Promise.all([
                ...[buildQueue, signQueue, uploadQueue, ...Object.values(reportQueues)].map((queue) => queue.close()),
                uploadEvents.close(),
              ]),
          ],
          ['close Redis', () => Promise.all([producer.quit(), workerConnection.quit(), subscriber.quit()])],
        ],
        logger,
      );
    }),
  };
}
