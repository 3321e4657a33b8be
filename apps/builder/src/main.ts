#!/usr/bin/env node
import { loadConfigOrExit, parseServiceArgs } from '@spark/config';
import { createLogger, installShutdown } from '@spark/service';
import { createBuilder } from './builder.js';

const args = parseServiceArgs('spark-builder');
const { config } = loadConfigOrExit(args.configFile);
const logger = createLogger('spark-builder');
const builder = createBuilder({ config, logger });
// Draining may take DrainTimeout, then stopped builds get their kill grace period.
installShutdown(logger, () => builder.close(), { timeoutMs: config.builder.drainTimeoutMs + 60_000 });
await builder.start();
