import { readFileSync } from 'node:fs';
import { parseArgs } from 'node:util';
import { usageError } from '../commands.js';
import { EXIT_CONFIG } from '@spark/config';
import { createLogger, installShutdown, once } from '@spark/service';
import { WATCH_OPTIONS, watchedHosts } from '../redis-targets.js';
import { startDashboard, type DashboardHost } from './dashboard.js';

/**
 * `spark dashboard [--config FILE] [--redis [LABEL=]URL]… [--prefix P]
 * [--bind ADDR] [--port N] [--read-write] [--token-file FILE]`: serves the
 * queue dashboard until SIGTERM/SIGINT. Without `--redis` it shows this host.
 */
export async function dashboardCommand(argv: string[], stderr: NodeJS.WritableStream): Promise<number> {
  let values: {
    config?: string | undefined;
    redis?: string[] | undefined;
    prefix?: string | undefined;
    bind?: string | undefined;
    port?: string | undefined;
    'read-write'?: boolean | undefined;
    'token-file'?: string | undefined;
  };
  try {
    ({ values } = parseArgs({
      args: argv,
      options: {
        ...WATCH_OPTIONS,
        bind: { type: 'string' },
        port: { type: 'string' },
        'read-write': { type: 'boolean' },
        'token-file': { type: 'string' },
      },
      strict: true,
    }));
  } catch (error) {
    return usageError({ stderr }, 'dashboard', (error as Error).message);
  }
  const hosts: DashboardHost[] | null = watchedHosts(values, stderr, values['read-write'] ? 'admin' : 'operator');
  if (!hosts) return EXIT_CONFIG;
  const port = values.port === undefined ? 3000 : Number(values.port);
  if (!Number.isInteger(port) || port < 0 || port > 65535) {
    return usageError({ stderr }, 'dashboard', `--port must be 0..65535, got ${values.port}`);
  }
  let token: string | null = null;
  if (values['token-file']) {
    try {
      token = readFileSync(values['token-file'], 'utf8').trim();
    } catch (error) {
      stderr.write(`spark dashboard: cannot read --token-file: ${(error as Error).message}\n`);
      return 66;
    }
    if (token.length < 16) {
      stderr.write('spark dashboard: the token must be at least 16 characters\n');
      return 64;
    }
  }
  const logger = createLogger('dashboard');
  try {
    const dashboard = await startDashboard({
      hosts,
      bind: values.bind ?? '127.0.0.1',
      port,
      readWrite: values['read-write'] ?? false,
      token,
      logger,
    });
    logger.info(
      { url: dashboard.url, hosts: hosts.map((h) => h.label), readWrite: values['read-write'] ?? false },
      `dashboard on ${dashboard.url}`,
    );
    installShutdown(
      logger,
      once(() => dashboard.close()),
    );
    return await new Promise<number>(() => {});
  } catch (error) {
    stderr.write(`spark dashboard: ${(error as Error).message}\n`);
    return 1;
  }
}
