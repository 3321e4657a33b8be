#!/usr/bin/env node
import { loadConfigOrExit, parseServiceArgs } from '@spark/config';
import { createLogger, installShutdown, processMetrics, serveMetrics } from '@spark/service';
import { createUploader } from './uploader.js';

const { config } = loadConfigOrExit(parseServiceArgs('spark-uploader').configFile);
const logger = createLogger('uploader');
const uploader = createUploader({ config, logger });
const metricsEndpoint = await serveMetrics(processMetrics('uploader'), config.uploader.metricsPort, logger);
installShutdown(logger, async () => {
  await uploader.close();
  await metricsEndpoint.close();
});
await uploader.start();
