#!/usr/bin/env node
import { loadConfigOrExit, parseServiceArgs } from '@spark/config';
import { createLogger, installShutdown, processMetrics, serveMetrics } from '@spark/service';
import { createBuilder } from './builder.js';

const args = parseServiceArgs('spark-builder');
const { config } = loadConfigOrExit(args.configFile);
const logger = createLogger('builder');
const builder = createBuilder({ config, logger });
// Draining may take DrainTimeout, then stopped builds get their kill grace period.
// spark-builder@N serves its metrics on MetricsPort + N - 1, so instances on one host do not collide.
const instance = Number(/@(\d+)$/.exec(process.env['SPARK_BUILDER_ID'] ?? '')?.[1] ?? 1);
const metricsPort = config.builder.metricsPort === 0 ? 0 : config.builder.metricsPort + Math.max(0, instance - 1);
const metricsEndpoint = await serveMetrics(processMetrics('builder'), metricsPort, logger);
installShutdown(
  logger,
  async () => {
    await builder.close();
    await metricsEndpoint.close();
  },
  { timeoutMs: config.builder.drainTimeoutMs + 60_000 },
);
await builder.start();
