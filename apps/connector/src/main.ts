#!/usr/bin/env node
import { loadConfigOrExit, parseServiceArgs } from '@spark/config';
import { createLogger, installShutdown } from '@spark/service';
import { KeySetupError, loadConnectorKeys } from './curve-keys.js';
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
installShutdown(logger, () => connector.close());
await connector.start();
