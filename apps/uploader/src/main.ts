#!/usr/bin/env node
import { loadConfigOrExit, parseServiceArgs } from '@spark/config';
import { createLogger, installShutdown } from '@spark/service';
import { createUploader } from './uploader.js';

const { config } = loadConfigOrExit(parseServiceArgs('spark-uploader').configFile);
const logger = createLogger('spark-uploader');
const uploader = createUploader({ config, logger });
installShutdown(logger, () => uploader.close());
await uploader.start();
