#!/usr/bin/env node
import { callerGone } from './caller-watch.js';
import { DEFAULT_CONFIG_FILE, DEFAULT_STATE_DIR } from './helper-config.js';
import { DEFAULT_KILL_GRACE_MS } from './process-tree.js';
import { parseRequest, RefusedRequest } from './request.js';
import { EXIT_FAILED, EXIT_REFUSED, runRequest } from './run-helper.js';
import { parseHelperOptions } from './helper-options.js';

const say = (message: string) => process.stderr.write(`spark-build-helper: ${message}\n`);

// debspawn and what it starts get the usual root umask, not the caller's (the
// builder unit's UMask=0007 through sudo would make dpkg-deb refuse its DEBIAN/).
process.umask(0o022);

try {
  if (process.getuid?.() !== 0) throw new RefusedRequest('runs as root only: spark-builder calls it through sudo');
  const { options, request: args } = parseHelperOptions(process.argv.slice(2), process.env);
  const request = parseRequest(args);
  const code = await runRequest(
    {
      configFile: options.configFile ?? DEFAULT_CONFIG_FILE,
      stateDir: options.stateDir ?? DEFAULT_STATE_DIR,
      caller: options.caller,
      killGraceMs: options.killGraceMs ?? DEFAULT_KILL_GRACE_MS,
      stopWhen: callerGone(options.underSudo),
      say,
    },
    request,
  );
  process.exit(code);
} catch (error) {
  if (error instanceof RefusedRequest) {
    say(`refused: ${error.message}`);
    process.exit(EXIT_REFUSED);
  }
  say(`failed: ${(error as Error).message}`);
  process.exit(EXIT_FAILED);
}
