#!/usr/bin/env node
import { installShutdown, processMetrics, serveMetrics, startService, type StartedService } from '@spark/service';
import { createBuilderOnRedis } from './builder-redis.js';

const service: StartedService = startService({
  service: 'builder',
  summary: 'Runs build jobs from the build queue in debspawn containers, through sudo and spark-build-helper; one or more per host.',
  entryUrl: import.meta.url,
  environment: [['SPARK_BUILDER_ID', 'set by spark-builder@N (%n): instance N serves its metrics on [builder] MetricsPort + N - 1']],
});
const { config, logger } = service;
const builder = createBuilderOnRedis(config, logger);
// Draining may take DrainTimeout, then stopped builds get their kill grace period.
// spark-builder@N serves its metrics on MetricsPort + N - 1, so instances on one host do not collide.
const instance = Number(/@(\d+)$/.exec(process.env['SPARK_BUILDER_ID'] ?? '')?.[1] ?? 1);
const metricsPort = config.builder.metricsPort === 0 ? 0 : config.builder.metricsPort + Math.max(0, instance - 1);
const metricsEndpoint = await serveMetrics(
  processMetrics('builder', { version: service.version }),
  metricsPort,
  logger,
  config.builder.metricsListen,
);
installShutdown(
  logger,
  async () => {
    await builder.close();
    await metricsEndpoint.close();
  },
  { timeoutMs: config.builder.drainTimeoutMs + 60_000 },
);
await service.run(() => builder.start());
