#!/usr/bin/env node
import { loadConfigOrExit, parseServiceArgs } from '@spark/config';

// Until the connector stage is built, the service loads and checks its config and says so.
const args = parseServiceArgs('spark-connector');
const { config } = loadConfigOrExit(args.configFile);
process.stdout.write(`spark-connector: config ${config.file} is valid (machine ${config.machineName}, id ${config.machineId}); the connector stage is not implemented yet\n`);
