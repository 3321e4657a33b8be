#!/usr/bin/env node
import { loadConfigOrExit, parseServiceArgs } from '@spark/config';
import { QUEUE_NAMES } from '@spark/protocol';
import { connectRedis, createLogger, installShutdown, openQueue, processMetrics, redisLogin, serveMetrics } from '@spark/service';
import { KeySetupError, loadConnectorKeys } from '@spark/lighthouse';
import { createConnector } from './connector.js';

const args = parseServiceArgs('spark-connector');
const { config } = loadConfigOrExit(args.configFile);
const logger = createLogger('connector');
let keys;
try {
  keys = loadConnectorKeys(config);
} catch (error) {
  if (!(error instanceof KeySetupError)) throw error;
  process.stderr.write(`spark-connector: ${error.message}\n`);
  process.exit(2);
}
const connector = createConnector({
  config,
  keys,
  logger,
  onFatal: (error) => {
    throw error;
  },
});
const metrics = processMetrics('connector');
// The connector reports every queue's depth: one scrape target shows the whole pipeline.
const metricsRedis = connectRedis(config.redisUrl, 'worker', redisLogin(config.redisCredentialsDir, 'connector'));
const depthQueues = QUEUE_NAMES.map((name) => openQueue(name, metricsRedis, config.queuePrefix, logger));
metrics.watchQueues(depthQueues);
const metricsEndpoint = await serveMetrics(metrics, config.connector.metricsPort, logger);
installShutdown(logger, async () => {
  await connector.close();
  await metricsEndpoint.close();
  await Promise.allSettled(depthQueues.map((queue) => queue.close()));
  metricsRedis.disconnect();
});
await connector.start();
