#!/usr/bin/env node
import { loadConfigOrExit, parseServiceArgs } from '@spark/config';

// Until the signer stage is built, the service loads and checks its config and says so.
const args = parseServiceArgs('spark-signer');
const { config } = loadConfigOrExit(args.configFile);
process.stdout.write(`spark-signer: config ${config.file} is valid (machine ${config.machineName}, id ${config.machineId}); the signer stage is not implemented yet\n`);
