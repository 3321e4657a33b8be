import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';
import type { Queue } from 'bullmq';
import type { Logger } from 'pino';

/**
 * The Prometheus metrics of the pipeline. Every service creates the same set
 * (names are one contract for dashboards); each fills the ones its stage owns.
 * All names start with `spark_`.
 */
export interface SparkMetrics {
  registry: Registry;
  /** Jobs waiting/active/delayed/failed per queue, read from Redis at scrape time for the watched queues. */
  queueDepth: Gauge<'queue' | 'state'>;
  /** Adds queues whose depth `queueDepth` reports. */
  watchQueues(queues: readonly Queue[]): void;
  /** Jobs finished by a stage, by result (`success`, `failure`, `depwait`, `rejected`, `failed`, …). */
  jobsTotal: Counter<'stage' | 'result'>;
  /** Seconds a job spent in a stage. */
  stageDuration: Histogram<'stage'>;
  /** Seconds from a Lighthouse request to its reply, by request name. */
  lighthouseRoundTrip: Histogram<'request'>;
  /** Lighthouse requests that got no usable reply, by request name and reason (`timeout`, `invalid`, `error`). */
  lighthouseErrors: Counter<'request' | 'reason'>;
  /** Bytes uploaded to the archive. */
  uploadBytes: Counter;
}

/** Creates the metric set of one service, with Node's default process metrics labelled by service. */
export function createMetrics(service: string): SparkMetrics {
  const registry = new Registry();
  registry.setDefaultLabels({ service });
  collectDefaultMetrics({ register: registry, prefix: 'spark_' });
  const watched: Queue[] = [];
  return {
    registry,
    queueDepth: new Gauge({
      name: 'spark_queue_jobs',
      help: 'Jobs in a pipeline queue by state',
      labelNames: ['queue', 'state'],
      registers: [registry],
      async collect() {
        for (const queue of watched) {
          const counts = await queue.getJobCounts('waiting', 'active', 'delayed', 'failed');
          for (const [state, count] of Object.entries(counts)) this.set({ queue: queue.name, state }, count);
        }
      },
    }),
    watchQueues: (queues) => void watched.push(...queues),
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
    uploadBytes: new Counter({ name: 'spark_upload_bytes_total', help: 'Bytes uploaded to the archive', registers: [registry] }),
  };
}

let current: SparkMetrics | null = null;

/**
 * The metric set of this process: created on first call with the service's
 * name. Stage code records into it through {@link currentMetrics}, so metrics
 * need no extra parameters threaded through every function.
 */
export function processMetrics(service: string): SparkMetrics {
  current ??= createMetrics(service);
  return current;
}

/** This process's metric set, or null when the service did not turn metrics on (tests, tools). */
export function currentMetrics(): SparkMetrics | null {
  return current;
}

/** A running `/metrics` endpoint. */
export interface MetricsServer {
  /** `http://127.0.0.1:<port>/metrics`, or null when turned off or the port was taken. */
  url: string | null;
  close(): Promise<void>;
}

/**
 * Serves `GET /metrics` in Prometheus text format on 127.0.0.1:`port`
 * (`port` 0 turns it off). A port already in use is logged and the service
 * runs on without metrics: metrics must never stop a build.
 */
export async function serveMetrics(metrics: SparkMetrics, port: number, logger: Logger, bind = '127.0.0.1'): Promise<MetricsServer> {
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
  const listening = await new Promise<boolean>((resolve) => {
    server.once('error', (error: NodeJS.ErrnoException) => {
      logger.warn(
        { port, code: error.code },
        `metrics: cannot listen on ${bind}:${port} (${error.code ?? error.message}); running without /metrics`,
      );
      resolve(false);
    });
    server.listen(port, bind, () => resolve(true));
  });
  if (!listening) return { url: null, close: () => Promise.resolve() };
  const address = server.address() as AddressInfo;
  return {
    url: `http://${bind}:${address.port}/metrics`,
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}
