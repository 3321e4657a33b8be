#!/usr/bin/env node
import { parseArgs } from 'node:util';
import { startUploadReceiver } from './upload-receiver.js';

/*
 * Runs the upload receiver as a process, for the demo and for trying dput or
 * spark-uploader by hand: `serve.js --dir DIR --repo master [--repo extra]
 * [--prefix /_upload] [--port 8080] [--host 127.0.0.1] [--fail-fraction 0.5]`.
 * Prints one JSON line per request; SIGTERM/SIGINT stop it.
 */
const USAGE =
  'usage: upload-receiver --dir DIR --repo NAME [--repo NAME …] [--prefix /PATH] [--port N] [--host ADDR] [--fail-fraction 0..1]';

let values;
try {
  ({ values } = parseArgs({
    options: {
      dir: { type: 'string' },
      repo: { type: 'string', multiple: true },
      prefix: { type: 'string' },
      port: { type: 'string' },
      host: { type: 'string' },
      'fail-fraction': { type: 'string' },
    },
    strict: true,
  }));
} catch (error) {
  process.stderr.write(`upload-receiver: ${(error as Error).message}\n${USAGE}\n`);
  process.exit(64);
}
const port = Number(values.port ?? '0');
const failFraction = Number(values['fail-fraction'] ?? '0');
const prefix = values.prefix ?? '';
if (
  !values.dir ||
  !values.repo?.length ||
  !Number.isInteger(port) ||
  !(failFraction >= 0 && failFraction <= 1) ||
  (prefix !== '' && !/^\/[A-Za-z0-9._~/-]*[^/]$/.test(prefix))
) {
  process.stderr.write(
    `upload-receiver: --dir and --repo are required; --port an integer, --fail-fraction within 0..1, --prefix like /_upload\n${USAGE}\n`,
  );
  process.exit(64);
}
const receiver = await startUploadReceiver({
  dir: values.dir,
  repos: values.repo,
  pathPrefix: prefix,
  port,
  host: values.host ?? '127.0.0.1',
  failFraction,
  onRequest: (request) => process.stdout.write(`${JSON.stringify(request)}\n`),
});
process.stdout.write(`${JSON.stringify({ listening: `${receiver.url}${prefix}`, dir: values.dir, repos: values.repo })}\n`);
const stop = () => {
  receiver.close().then(
    () => process.exit(0),
    () => process.exit(1),
  );
};
process.on('SIGTERM', stop);
process.on('SIGINT', stop);
