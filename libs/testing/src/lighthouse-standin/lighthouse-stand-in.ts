import { Context, Router } from 'zeromq';
import { JobBoard, type StandInJob } from './job-board.js';
import { startZapHandler } from './zap-handler.js';
import { waitFor } from '../wait-for.js';

/** Options of {@link startLighthouseStandIn}. */
export interface StandInOptions {
  /** ZeroMQ endpoint to bind (default `tcp://127.0.0.1:*`, a free port). */
  endpoint?: string;
  /** Lighthouse's Curve keypair (Z85). */
  serverKeys: { publicKey: string; secretKey: string };
  /** Directory of trusted worker keyfiles (`*.key`), as Lighthouse's `trusted_curve_keys_dir`. */
  trustedKeysDir: string;
  /** The `archive-info` reply's repositories. */
  archiveRepos?: Record<string, { upload_fqdn: string; upload_method: string }>;
  /** Jobs to start with; a `board` shared with an earlier stand-in keeps their states across a restart. */
  jobs?: StandInJob[];
  board?: JobBoard;
}

/** One request the stand-in received, as parsed JSON (or the raw text when it was not JSON). */
export type RecordedRequest = Record<string, unknown> & { request?: unknown };

/** A running stand-in Lighthouse. */
export interface LighthouseStandIn {
  /** The bound endpoint, e.g. `tcp://127.0.0.1:41234`. */
  readonly endpoint: string;
  readonly board: JobBoard;
  /** Every request received, in order. */
  readonly requests: RecordedRequest[];
  /** When each of {@link LighthouseStandIn.requests} arrived (same index), in ms since the epoch with sub-ms precision. */
  readonly receivedAt: number[];
  /** Z85 public keys the ZAP handler refused. */
  readonly refused: string[];
  /** Adds a job in state WAITING. */
  addJob(job: StandInJob): void;
  /** Answers the next request named `request` with `frame` as is, instead of the protocol's reply (nothing is applied). */
  replyNext(request: string, frame: string): void;
  /**
   * Answers the next `times` requests named `request` the way Lighthouse does when
   * its database fails: `{"error": "Failed to handle request: …"}`, nothing applied.
   */
  failNext(request: string, times?: number): void;
  /** Resolves once `predicate` holds for the recorded requests; rejects after `timeoutMs`. */
  waitFor(predicate: (requests: RecordedRequest[]) => boolean, timeoutMs?: number): Promise<void>;
  /** Unbinds and closes both sockets. Safe to call twice. */
  close(): void;
}

/**
 * Starts a stand-in for Laniakea's Lighthouse jobs server, for tests and the
 * demo: a CURVE-server ROUTER whose ZAP handler admits only trusted worker
 * keys, speaking the JSON protocol of `jobs_server.py` / `jobs_worker.py`.
 */
export async function startLighthouseStandIn(options: StandInOptions): Promise<LighthouseStandIn> {
  const context = new Context();
  const zap = await startZapHandler(context, options.trustedKeysDir);
  const socket = new Router({
    context,
    linger: 0,
    curveServer: true,
    curvePublicKey: options.serverKeys.publicKey,
    curveSecretKey: options.serverKeys.secretKey,
    zapDomain: 'lighthouse',
  });
  try {
    await socket.bind(options.endpoint ?? 'tcp://127.0.0.1:*');
  } catch (error) {
    zap.close();
    socket.close();
    throw error;
  }
  const board = options.board ?? new JobBoard();
  for (const job of options.jobs ?? []) board.add(job);
  const requests: RecordedRequest[] = [];
  const receivedAt: number[] = [];
  const overrides = new Map<string, string[]>();
  const archiveRepos = options.archiveRepos ?? { master: { upload_fqdn: 'archive.example.org/_upload', upload_method: 'https' } };

  const answer = (request: RecordedRequest): string => {
    const name = typeof request.request === 'string' ? request.request : '';
    const override = overrides.get(name)?.shift();
    if (override !== undefined) return override;
    const uuid = typeof request['uuid'] === 'string' ? request['uuid'] : '';
    const reportError = (event: Parameters<JobBoard['report']>[1], excerpt?: string) => {
      const error = board.report(uuid, event, excerpt);
      return JSON.stringify(error === null ? true : { error });
    };
    switch (name) {
      case 'archive-info':
        return JSON.stringify({ archive_repos: archiveRepos });
      case 'job': {
        const strings = (value: unknown) => (Array.isArray(value) ? value.filter((item): item is string => typeof item === 'string') : []);
        const job = board.assign(strings(request['accepts']), strings(request['architectures']), String(request['machine_id']));
        return JSON.stringify(job);
      }
      case 'job-accepted':
        return reportError('accepted');
      case 'job-rejected':
        return reportError('rejected');
      case 'job-success':
        return reportError('success');
      case 'job-failed':
        return reportError('failed');
      case 'job-status':
        board.report(uuid, 'status', typeof request['log_excerpt'] === 'string' ? request['log_excerpt'] : '');
        return '';
      case '':
        return JSON.stringify({ error: 'Request was malformed.' });
      default:
        return JSON.stringify({ error: 'Request type is unknown.' });
    }
  };

  const serve = async () => {
    for await (const frames of socket) {
      const [address, , data] = frames;
      if (frames.length !== 3 || !address || !data) continue;
      const arrived = performance.timeOrigin + performance.now();
      let request: RecordedRequest;
      try {
        const value = JSON.parse(data.toString('utf8')) as unknown;
        request =
          value !== null && typeof value === 'object' && !Array.isArray(value)
            ? (value as RecordedRequest)
            : { raw: data.toString('utf8') };
      } catch {
        // Lighthouse ignores requests that are not JSON, leaving the worker to time out.
        requests.push({ raw: data.toString('utf8') });
        receivedAt.push(arrived);
        continue;
      }
      requests.push(request);
      receivedAt.push(arrived);
      await socket.send([address, '', answer(request)]);
    }
  };
  serve().catch(() => undefined);

  let closed = false;
  return {
    endpoint: socket.lastEndpoint ?? options.endpoint ?? '',
    board,
    requests,
    receivedAt,
    refused: zap.refused,
    addJob: (job) => board.add(job),
    replyNext(request, frame) {
      overrides.set(request, [...(overrides.get(request) ?? []), frame]);
    },
    failNext(request, times = 1) {
      const frame = JSON.stringify({
        error: `Failed to handle request: {'request': '${request}'} => (psycopg2.errors.SerializationFailure) could not serialize access`,
      });
      overrides.set(request, [...(overrides.get(request) ?? []), ...Array.from({ length: times }, () => frame)]);
    },
    async waitFor(predicate, timeoutMs = 10_000) {
      await waitFor("the stand-in's requests to meet the test's condition", () => predicate(requests), {
        timeoutMs,
        intervalMs: 20,
        detail: () => `requests: ${JSON.stringify(requests.map((r) => r.request ?? r['raw']))}`,
      });
    },
    close() {
      if (closed) return;
      closed = true;
      socket.close();
      zap.close();
    },
  };
}
