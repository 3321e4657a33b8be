import { randomBytes } from 'node:crypto';
import { lstatSync, readFileSync } from 'node:fs';
import { parseArgs } from 'node:util';
import { usageError } from '../commands.js';
import { createLogger, installShutdown, once } from '@spark/service';
import { WATCH_OPTIONS, watchedHosts } from '../redis-targets.js';
import { startDashboard, type DashboardHost } from './dashboard.js';

/**
 * Why a token file may not be used, or null: it must be a regular file of the
 * user running the dashboard that no one else can read or write (0600, 0400).
 */
export function tokenFileProblem(file: string, uid = process.getuid?.() ?? 0): string | null {
  const info = lstatSync(file);
  if (!info.isFile()) return `${file} is not a regular file`;
  if (info.uid !== uid) return `${file} belongs to uid ${info.uid}, not to the user running the dashboard (${uid})`;
  if ((info.mode & 0o077) !== 0) return `${file} is readable or writable by others (mode ${(info.mode & 0o777).toString(8)}): chmod 600 it`;
  return null;
}

/**
 * `spark dashboard [--config FILE] [--redis [LABEL=]URL]… [--prefix P]
 * [--bind ADDR] [--port N] [--read-write] [--token-file FILE]`: serves the
 * queue dashboard until SIGTERM/SIGINT. Without `--redis` it shows this host.
 *
 * Read-only it logs in as `spark-operator`; with `--read-write` as
 * `spark-dashboard` (the queues' keys only) and always asks for a token —
 * from `--token-file` (0600, the caller's), or a new random one per start,
 * printed as a login link on the caller's terminal (stderr, never the log).
 * A token, not a Unix socket of mode 0600: a browser cannot open a socket,
 * while the link works through an SSH port forward, and the cookie it sets
 * is HttpOnly and SameSite=Strict, so no other site's page can use it.
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
  const readWrite = values['read-write'] ?? false;
  const hosts: DashboardHost[] | number = watchedHosts(values, stderr, readWrite ? 'dashboard' : 'operator');
  if (typeof hosts === 'number') return hosts;
  const port = values.port === undefined ? 3000 : Number(values.port);
  if (!Number.isInteger(port) || port < 0 || port > 65535) {
    return usageError({ stderr }, 'dashboard', `--port must be 0..65535, got ${values.port}`);
  }
  let token: string | null = null;
  let generated = false;
  if (values['token-file']) {
    try {
      const problem = tokenFileProblem(values['token-file']);
      if (problem) {
        stderr.write(`spark dashboard: refusing --token-file: ${problem}\n`);
        return 64;
      }
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
      readWrite,
      token: token ?? (readWrite ? ((generated = true), randomBytes(32).toString('base64url')) : null),
      logger,
    });
    logger.info({ url: dashboard.url, hosts: hosts.map((h) => h.label), readWrite }, `dashboard on ${dashboard.url}`);
    if (generated) {
      // The token goes to the terminal of whoever started the dashboard, never to the log (the journal).
      stderr.write(
        `spark dashboard: log in at ${dashboard.loginUrl ?? dashboard.url} (this link holds the token; valid until the dashboard stops)\n`,
      );
    }
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
