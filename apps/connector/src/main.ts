#!/usr/bin/env node
import { EX_CONFIG, EX_NOINPUT } from '@spark/config';
import { QUEUE_NAMES } from '@spark/protocol';
import {
  connectRedis,
  installShutdown,
  openQueue,
  processMetrics,
  redisLogin,
  serveMetrics,
  startService,
  type StartedService,
} from '@spark/service';
import { KeySetupError, loadConnectorKeys } from '@spark/lighthouse';
import { createConnectorOnRedis } from './connector-redis.js';

// Typed, so that TypeScript knows `service.exit` does not return.
const service: StartedService = startService({
  service: 'connector',
  summary:
    'The only process that talks to Lighthouse (CurveZMQ) and holds the Curve secret key: asks for jobs, queues them for the builders, sends their reports.',
  entryUrl: import.meta.url,
  // The job fetcher and the archive-info refresh read these from the config at each pause.
  liveKeys: ['connector.pollIntervalMs', 'connector.archiveInfoIntervalMs'],
});
const { config, logger } = service;
let keys;
try {
  keys = loadConnectorKeys(config);
} catch (error) {
  if (!(error instanceof KeySetupError)) throw error;
  service.exit(error.unreadable ? EX_NOINPUT : EX_CONFIG, error.message);
}
const connector = createConnectorOnRedis(config, {
  keys,
  logger,
  onFatal: (error) => {
    throw error;
  },
});
const metrics = processMetrics('connector', { version: service.version });
// The connector reports every queue's depth and the live builders: one scrape target shows the whole pipeline.
// Fail-fast reads: while Redis is away a scrape leaves those out at once instead of waiting for it.
const metricsRedis = connectRedis(config.redisUrl, 'producer', redisLogin(config.redisCredentialsDir, 'connector'));
const depthQueues = QUEUE_NAMES.map((name) => openQueue(name, metricsRedis, config.queuePrefix, logger));
metrics.watchQueues(depthQueues);
metrics.watchBuilders(metricsRedis, config.queuePrefix);
const metricsEndpoint = await serveMetrics(metrics, config.connector.metricsPort, logger, config.connector.metricsListen);
installShutdown(logger, async () => {
  await connector.close();
  await metricsEndpoint.close();
  await Promise.allSettled(depthQueues.map((queue) => queue.close()));
  metricsRedis.disconnect();
});
await service.run(() => connector.start());
