#!/usr/bin/env node
import { installShutdown, processMetrics, serveMetrics, startService, type StartedService } from '@spark/service';

import { createUploaderOnRedis } from './uploader-redis.js';

const service: StartedService = startService({
  service: 'uploader',
  summary:
    'Uploads signed results to the archive (HTTP PUT, as dput-ng), exactly once, retrying with backoff until [uploader] GiveUpAfter.',
  entryUrl: import.meta.url,
  environment: [
    ['SSL_CERT_FILE', 'CA bundle for HTTPS uploads (default /etc/ssl/certs/ca-certificates.crt)'],
    ['https_proxy, http_proxy', 'proxy for uploads of that scheme'],
    ['no_proxy', 'hosts reached without the proxy'],
  ],
});
const { config, logger } = service;
// The composition root: the uploader's queues and records are opened on Redis and handed to it.
const uploader = createUploaderOnRedis(config, logger);
const metricsEndpoint = await serveMetrics(
  processMetrics('uploader', { version: service.version }),
  config.uploader.metricsPort,
  logger,
  config.uploader.metricsListen,
);
installShutdown(logger, async () => {
  await uploader.close();
  await metricsEndpoint.close();
});
await service.run(() => uploader.start());
