import { timingSafeEqual } from 'node:crypto';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { createBullBoard } from '@bull-board/api';
import { BullMQAdapter } from '@bull-board/api/bullMQAdapter';
import { ExpressAdapter } from '@bull-board/express';
import type { Queue } from 'bullmq';
import express, { type NextFunction, type Request, type Response } from 'express';
import type { Logger } from 'pino';
import { QUEUE_NAMES } from '@spark/protocol';
import { connectRedis, openQueue, redactRedisUrl, type Redis, type RedisOptions } from '@spark/service';

/** One host's Redis to show. */
export interface DashboardHost {
  /** Section name in the dashboard (e.g. the host name). */
  label: string;
  url: string;
  prefix: string;
  /** How to log in (default: as the URL says). */
  login?: Pick<RedisOptions, 'username' | 'password'>;
}

/** Options of {@link startDashboard}. */
export interface DashboardOptions {
  hosts: readonly DashboardHost[];
  /** Address to bind (default 127.0.0.1). Anything but loopback needs a `token`. */
  bind?: string;
  /** Port (default 3000; 0 for any free port). */
  port?: number;
  /** Allow retrying, removing, pausing jobs (default false: read-only). Needs a `token`, also on loopback. */
  readWrite?: boolean;
  /** Secret a client must present (cookie, `?token=`, or `Authorization: Bearer`). */
  token?: string | null;
  logger: Logger;
}

/** A running dashboard. */
export interface Dashboard {
  url: string;
  /** `url` with `?token=…` when there is a token: opening it once sets the cookie. */
  loginUrl: string | null;
  close(): Promise<void>;
}

const LOOPBACK = new Set(['127.0.0.1', '::1', 'localhost']);
const COOKIE = 'spark_dashboard_token';

/**
 * Serves bull-board over the pipeline queues of each host, one section per
 * host. Bound to loopback by default; bound elsewhere, or read-write (bull-
 * board's API then adds, retries and removes jobs, and any local user can
 * reach a loopback port, the builder's too), it refuses to start without a
 * token, and then every request must carry it.
 */
export async function startDashboard(options: DashboardOptions): Promise<Dashboard> {
  const bind = options.bind ?? '127.0.0.1';
  const token = options.token ?? null;
  if (options.readWrite && !token) {
    throw new Error('refusing to serve a read-write dashboard without a token: every local user can reach a loopback port');
  }
  if (!LOOPBACK.has(bind) && !token) {
    throw new Error(`refusing to serve the dashboard on ${bind} without a token: pass --token-file FILE, or bind to 127.0.0.1`);
  }
  const connections: Redis[] = [];
  const queues: Queue[] = [];
  const adapters = options.hosts.flatMap((host) => {
    const connection = connectRedis(host.url, 'worker', host.login ?? {});
    const shown = redactRedisUrl(host.url);
    connection.on('error', (err) => options.logger.warn({ err, redis: shown }, `dashboard: Redis ${host.label} unreachable`));
    connections.push(connection);
    return QUEUE_NAMES.map((name) => {
      // A read-only dashboard writes nothing. Redis errors are logged once, by the connection's listener above.
      const queue = openQueue(name, connection, host.prefix, null, { readOnly: !options.readWrite });
      queues.push(queue);
      return new BullMQAdapter(queue, {
        readOnlyMode: !options.readWrite,
        allowRetries: Boolean(options.readWrite),
        prefix: options.hosts.length > 1 ? `${host.label}:` : '',
        delimiter: ':',
        description: `${host.label} (${shown}, prefix ${host.prefix})`,
      });
    });
  });

  const serverAdapter = new ExpressAdapter();
  serverAdapter.setBasePath('/');
  createBullBoard({ queues: adapters, serverAdapter, options: { uiConfig: { boardTitle: 'spark queues' } } });
  const app = express();
  app.disable('x-powered-by');
  if (token) app.use(requireToken(token));
  app.use('/', serverAdapter.getRouter() as express.Router);

  const server: Server = createServer(app);
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(options.port ?? 3000, bind, () => resolve());
  });
  const { port } = server.address() as AddressInfo;
  const host = bind.includes(':') ? `[${bind}]` : bind;
  return {
    url: `http://${host}:${port}/`,
    loginUrl: token ? `http://${host}:${port}/?token=${encodeURIComponent(token)}` : null,
    async close() {
      server.closeAllConnections();
      await new Promise<void>((resolve) => server.close(() => resolve()));
      await Promise.allSettled(queues.map((queue) => queue.close()));
      for (const connection of connections) connection.disconnect();
    },
  };
}

function same(a: string, b: string): boolean {
  const x = Buffer.from(a);
  const y = Buffer.from(b);
  return x.length === y.length && timingSafeEqual(x, y);
}

/** Accepts `?token=` once (and remembers it in an HttpOnly cookie), the cookie, or a Bearer header. */
function requireToken(token: string) {
  return (req: Request, res: Response, next: NextFunction) => {
    const query = typeof req.query['token'] === 'string' ? req.query['token'] : null;
    const cookie = /(?:^|;\s*)spark_dashboard_token=([^;]+)/.exec(req.headers.cookie ?? '')?.[1] ?? null;
    const bearer = /^Bearer (.+)$/.exec(req.headers.authorization ?? '')?.[1] ?? null;
    const presented = query ?? (cookie ? decodeURIComponent(cookie) : null) ?? bearer;
    if (presented === null || !same(presented, token)) {
      res.status(401).type('text/plain').send('spark dashboard: a valid token is required (?token=…)\n');
      return;
    }
    if (query) res.setHeader('Set-Cookie', `${COOKIE}=${encodeURIComponent(query)}; HttpOnly; SameSite=Strict; Path=/`);
    next();
  };
}
