import { createServer, type Server } from 'node:http';
import { BlockList, isIP, isIPv6, type AddressInfo } from 'node:net';
import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';
import type { Queue } from 'bullmq';
import type { Redis } from 'ioredis';
import type { Logger } from 'pino';
import { DEFAULT_METRICS_LISTEN } from '@spark/config';
import { readBuilderHeartbeats } from './builder-heartbeats.js';

/**
 * The Prometheus metrics of the pipeline. Every service creates the same set
 * (names are one contract for dashboards and the alert rules in
 * deploy/monitoring/); each fills the ones its stage owns. A metric with labels
 * shows no sample until its owner sets one, so a service never reports a value
 * it does not know. All names start with `spark_`. Besides the fields here,
 * every service reports `spark_build_info{version,node}` = 1 and Node's process
 * metrics (`spark_process_*`, `spark_nodejs_*`), all labelled `service`.
 */
export interface SparkMetrics {
  registry: Registry;
  /** Jobs waiting/active/delayed/failed per queue, read from Redis at scrape time for the watched queues. */
  queueDepth: Gauge<'queue' | 'state'>;
  /** Adds queues whose depth `queueDepth` reports. */
  watchQueues(queues: readonly Queue[]): void;
  /** Live builders (a heartbeat younger than its TTL), by whether they take new jobs; read at scrape time once {@link SparkMetrics.watchBuilders} is called. */
  buildersAlive: Gauge<'accepting'>;
  /** Makes `buildersAlive` read the builders' heartbeats from `redis` under `prefix` (the connector does). */
  watchBuilders(redis: Redis, prefix: string): void;
  /** Jobs finished by a stage, by result (`success`, `failure`, `depwait`, `rejected`, `failed`, …). */
  jobsTotal: Counter<'stage' | 'result'>;
  /** Seconds a job spent in a stage. */
  stageDuration: Histogram<'stage'>;
  /** Seconds from a Lighthouse request to its reply, by request name. */
  lighthouseRoundTrip: Histogram<'request'>;
  /** Lighthouse requests that got no usable reply, by request name and reason (`no-reply`: none in time or the socket failed; `unreadable`: not JSON). */
  lighthouseErrors: Counter<'request' | 'reason'>;
  /** 1 while the last request to Lighthouse got a reply, 0 from a request without one (and before the first reply), by endpoint. */
  lighthouseLinkUp: Gauge<'server'>;
  /** Unix time in seconds of the last reply from Lighthouse, by endpoint; no sample before the first. */
  lighthouseLastContact: Gauge<'server'>;
  /** Bytes uploaded to the archive. */
  uploadBytes: Counter;
}

/** What a service reports in `spark_build_info`. */
export interface BuildInfo {
  /** The service's package version (see `programVersion`). */
  version: string;
}

/**
 * Creates the metric set of one service, with Node's default process metrics
 * labelled by service, and `spark_build_info{version,node}` = 1 (`node`: the
 * Node.js version it runs on).
 */
export function createMetrics(service: string, build: BuildInfo): SparkMetrics {
  const registry = new Registry();
  registry.setDefaultLabels({ service });
  collectDefaultMetrics({ register: registry, prefix: 'spark_' });
  new Gauge({
    name: 'spark_build_info',
    help: 'Version of the service and of Node.js it runs on; always 1',
    labelNames: ['version', 'node'],
    registers: [registry],
  }).set({ version: build.version, node: process.versions.node }, 1);
  const watched: Queue[] = [];
  let builders: { redis: Redis; prefix: string } | null = null;
  return {
    registry,
    queueDepth: new Gauge({
      name: 'spark_queue_jobs',
      help: 'Jobs in a pipeline queue by state',
      labelNames: ['queue', 'state'],
      registers: [registry],
      async collect() {
        try {
          for (const queue of watched) {
            const counts = await queue.getJobCounts('waiting', 'active', 'delayed', 'failed');
            for (const [state, count] of Object.entries(counts)) this.set({ queue: queue.name, state }, count);
          }
        } catch {
          // Redis is away (its connection logs that): no sample rather than a stale count, and the rest of the scrape still answers.
          this.reset();
        }
      },
    }),
    watchQueues: (queues) => void watched.push(...queues),
    buildersAlive: new Gauge({
      name: 'spark_builders_alive',
      help: 'Builders with a live heartbeat, by whether they take new jobs',
      labelNames: ['accepting'],
      registers: [registry],
      async collect() {
        if (!builders) return;
        try {
          const beats = await readBuilderHeartbeats(builders.redis, builders.prefix);
          const accepting = beats.filter((beat) => beat.accepting).length;
          this.set({ accepting: 'true' }, accepting);
          this.set({ accepting: 'false' }, beats.length - accepting);
        } catch {
          this.reset();
        }
      },
    }),
    watchBuilders: (redis, prefix) => void (builders = { redis, prefix }),
    jobsTotal: new Counter({
      name: 'spark_jobs_total',
      help: 'Jobs finished by a stage, by result',
      labelNames: ['stage', 'result'],
      registers: [registry],
    }),
    stageDuration: new Histogram({
      name: 'spark_stage_duration_seconds',
      help: 'Time a job spent in a stage',
      labelNames: ['stage'],
      buckets: [0.1, 0.5, 1, 5, 15, 60, 300, 900, 3600, 4 * 3600, 24 * 3600],
      registers: [registry],
    }),
    lighthouseRoundTrip: new Histogram({
      name: 'spark_lighthouse_roundtrip_seconds',
      help: 'Lighthouse request to reply',
      labelNames: ['request'],
      buckets: [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 15],
      registers: [registry],
    }),
    lighthouseErrors: new Counter({
      name: 'spark_lighthouse_errors_total',
      help: 'Lighthouse requests without a usable reply',
      labelNames: ['request', 'reason'],
      registers: [registry],
    }),
    lighthouseLinkUp: new Gauge({
      name: 'spark_lighthouse_link_up',
      help: '1 while the last request to Lighthouse got a reply, else 0',
      labelNames: ['server'],
      registers: [registry],
    }),
    lighthouseLastContact: new Gauge({
      name: 'spark_lighthouse_last_contact_seconds',
      help: 'Unix time of the last reply from Lighthouse',
      labelNames: ['server'],
      registers: [registry],
    }),
    uploadBytes: new Counter({ name: 'spark_upload_bytes_total', help: 'Bytes uploaded to the archive', registers: [registry] }),
  };
}

let current: SparkMetrics | null = null;

/**
 * The metric set of this process: created on first call with the service's
 * name. Stage code records into it through {@link currentMetrics}, so metrics
 * need no extra parameters threaded through every function.
 */
export function processMetrics(service: string, build: BuildInfo): SparkMetrics {
  current ??= createMetrics(service, build);
  return current;
}

/** This process's metric set, or null when the service did not turn metrics on (tests, tools). */
export function currentMetrics(): SparkMetrics | null {
  return current;
}

const LOOPBACK = new BlockList();
LOOPBACK.addSubnet('127.0.0.0', 8, 'ipv4');
LOOPBACK.addAddress('::1', 'ipv6');

/** True for an address only this host can reach: 127.0.0.0/8, `::1`, or an IPv4-mapped 127.x (`::ffff:127.0.0.1`). */
export function isLoopbackAddress(address: string): boolean {
  return isIP(address) !== 0 && LOOPBACK.check(address, isIPv6(address) ? 'ipv6' : 'ipv4');
}

/** A running `/metrics` endpoint. */
export interface MetricsServer {
  /** `http://<address>:<port>/metrics` (IPv6 in brackets), or null when turned off or it could not listen. */
  url: string | null;
  close(): Promise<void>;
}

/** Why a listen failed, in the operator's terms, for the codes a wrong `MetricsPort`/`MetricsListen` gives. */
const LISTEN_PROBLEMS: Record<string, string> = {
  EADDRINUSE: 'the port is taken; set another MetricsPort',
  EADDRNOTAVAIL: "the address is not one of this host's; set MetricsListen to one of them, or 0.0.0.0 / ::",
  EACCES: 'not allowed to listen there',
};

/**
 * Serves `GET /metrics` in Prometheus text format on `listen`:`port`
 * (`listen` default 127.0.0.1, `MetricsListen`; `port` 0 turns it off) and
 * logs where. A port or address it cannot listen on is logged and the service
 * runs on without metrics: metrics must never stop a build.
 */
export async function serveMetrics(
  metrics: SparkMetrics,
  port: number,
  logger: Logger,
  listen: string = DEFAULT_METRICS_LISTEN,
): Promise<MetricsServer> {
  if (port === 0) return { url: null, close: () => Promise.resolve() };
  const server: Server = createServer((req, res) => {
    if (req.method !== 'GET' || (req.url ?? '').split('?')[0] !== '/metrics') {
      res.writeHead(404, { 'content-type': 'text/plain' }).end('only GET /metrics here\n');
      return;
    }
    metrics.registry.metrics().then(
      (text) => res.writeHead(200, { 'content-type': metrics.registry.contentType }).end(text),
      (error: unknown) => {
        logger.warn({ err: error }, 'metrics: collecting failed');
        res.writeHead(500, { 'content-type': 'text/plain' }).end(`collecting metrics failed: ${(error as Error).message}\n`);
      },
    );
  });
  const host = isIPv6(listen) ? `[${listen}]` : listen;
  const listening = await new Promise<boolean>((resolve) => {
    server.once('error', (error: NodeJS.ErrnoException) => {
      const why = LISTEN_PROBLEMS[error.code ?? ''];
      logger.warn(
        { port, listen, code: error.code },
        `metrics: cannot listen on ${host}:${port} (${error.code ?? error.message}${why ? `: ${why}` : ''}); running without /metrics`,
      );
      resolve(false);
    });
    server.listen(port, listen, () => resolve(true));
  });
  if (!listening) return { url: null, close: () => Promise.resolve() };
  const url = `http://${host}:${(server.address() as AddressInfo).port}/metrics`;
  logger.info({ url }, `metrics: serving ${url}`);
  return {
    url,
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}
