#!/usr/bin/env node
import { runSparkCli } from './spark-cli.js';

process.exitCode = await runSparkCli(process.argv.slice(2), { stdout: process.stdout, stderr: process.stderr });
