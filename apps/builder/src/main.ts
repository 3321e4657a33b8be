#!/usr/bin/env node
import { loadConfigOrExit, parseServiceArgs } from '@spark/config';

// Until the builder stage is built, the service loads and checks its config and says so.
const args = parseServiceArgs('spark-builder');
const { config } = loadConfigOrExit(args.configFile);
process.stdout.write(`spark-builder: config ${config.file} is valid (machine ${config.machineName}, id ${config.machineId}); the builder stage is not implemented yet\n`);
