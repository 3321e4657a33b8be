#!/usr/bin/env node
import { loadConfigOrExit, parseServiceArgs } from '@spark/config';

// Until the uploader stage is built, the service loads and checks its config and says so.
const args = parseServiceArgs('spark-uploader');
const { config } = loadConfigOrExit(args.configFile);
process.stdout.write(`spark-uploader: config ${config.file} is valid (machine ${config.machineName}, id ${config.machineId}); the uploader stage is not implemented yet\n`);
