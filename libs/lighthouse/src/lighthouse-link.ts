import { Request } from 'zeromq';
import { currentMetrics, type Logger } from '@spark/service';
import { parseReplyFrame, type LighthouseRequest, type LighthouseStatus } from '@spark/protocol';
import type { ConnectorKeys } from './curve-keys.js';
import { backoffDelay, pause, type Backoff } from './backoff.js';

/** A Lighthouse request without the identity fields every request carries. */
export type RequestBody = LighthouseRequest extends infer R
  ? R extends LighthouseRequest
    ? Omit<R, 'machine_name' | 'machine_id'>
    : never
  : never;

/**
 * Why a request got no reply, as far as the socket's events tell: no TCP
 * connection, a CURVE handshake that did not complete (the server key is not
 * Lighthouse's), Lighthouse refusing this worker's key (ZAP), no reply on a
 * working link, or the link closed.
 */
export type UnreachableReason = 'no-connection' | 'handshake' | 'key-refused' | 'no-reply' | 'closed';

/** Thrown when Lighthouse gave no usable reply in time; `message` says why as far as we can tell, `reason` in one word. */
export class LighthouseUnreachable extends Error {
  override name = 'LighthouseUnreachable';
  constructor(
    message: string,
    readonly reason: UnreachableReason = 'no-reply',
  ) {
    super(message);
  }
}

/** Thrown when Lighthouse answered with a frame that is not JSON (or too large); the link itself works. */
export class UnreadableReply extends Error {
  override name = 'UnreadableReply';
}

/** Thrown by {@link LighthouseLink.requestUntilAnswered} when the signal aborted before an answer came. */
export class LinkAborted extends Error {
  override name = 'LinkAborted';
}

/** What {@link createLighthouseLink} needs. */
export interface LighthouseLinkOptions {
  /** `LighthouseServer`, e.g. `tcp://master.example.org:5570`. */
  endpoint: string;
  keys: ConnectorKeys;
  /** `machine_name` and `machine_id`, sent with every request. */
  identity: { machine_name: string; machine_id: string };
  /** ms to wait for a reply (`[connector] ReplyTimeout`). */
  replyTimeoutMs: number;
  backoff: Backoff;
  /** File the server key came from, named in handshake diagnostics. */
  serverKeyFile: string;
  logger: Logger;
  /** Called whenever the link's status changes or a reply arrives (for `spark status`). */
  onStatus?: (status: LighthouseStatus) => void;
}

/** The connector's one conversation with Lighthouse: one request at a time on a CURVE REQ socket. */
export interface LighthouseLink {
  /**
   * Sends one request and resolves with the parsed reply (undefined for an
   * empty frame); rejects with {@link LighthouseUnreachable} after the reply
   * timeout, with {@link UnreadableReply} when the reply is not JSON.
   */
  request(body: RequestBody): Promise<unknown>;
  /**
   * Sends until Lighthouse answers, with exponential backoff and jitter between
   * tries. `signal` is checked between tries only: a request on the wire is
   * always given its full reply timeout. Rejects with {@link LinkAborted}.
   */
  requestUntilAnswered(body: RequestBody, signal: AbortSignal): Promise<unknown>;
  /** Closes the socket. Requests after this reject. */
  close(): void;
}

interface Diagnosis {
  connected: boolean;
  handshakeOk: boolean;
  authError: string | null;
  protocolError: string | null;
}

/**
 * Opens the link. A request without a reply in time closes the socket, and
 * the next one goes out on a fresh socket, so a late reply can never be taken
 * for the answer to a later request. An outage is logged once when it starts
 * and once when it ends. With the process's metrics on ({@link currentMetrics}),
 * `spark_lighthouse_link_up{server}` is 1 from a reply until a request gets
 * none (0 before the first reply and after {@link LighthouseLink.close}), and
 * `spark_lighthouse_last_contact_seconds{server}` holds the last reply's time.
 */
export function createLighthouseLink(options: LighthouseLinkOptions): LighthouseLink {
  const { logger } = options;
  let socket: Request | null = null;
  let diagnosis: Diagnosis = { connected: false, handshakeOk: false, authError: null, protocolError: null };
  let queue: Promise<unknown> = Promise.resolve();
  let closed = false;
  const status: LighthouseStatus = { server: options.endpoint, lastContactAt: null, outageSince: null, lastError: null };

  const open = (): Request => {
    // Relaxed as spark sets it, but not correlated: ZMQ_REQ_CORRELATE adds a
    // request-id frame, and Lighthouse drops every request that is not exactly
    // [identity, empty, data] (jobs_server.py). Correlation is not needed either:
    // after a timeout the next request goes out on a fresh socket, so a late
    // reply can never be read as the answer to a later request.
    const fresh = new Request({
      linger: 0,
      relaxed: true,
      receiveTimeout: options.replyTimeoutMs,
      sendTimeout: options.replyTimeoutMs,
      curveServerKey: options.keys.serverKey,
      curvePublicKey: options.keys.publicKey,
      curveSecretKey: options.keys.secretKey,
    });
    const seen: Diagnosis = { connected: false, handshakeOk: false, authError: null, protocolError: null };
    diagnosis = seen;
    const watch = async () => {
      for await (const event of fresh.events) {
        if (event.type === 'connect') seen.connected = true;
        else if (event.type === 'handshake') {
          seen.handshakeOk = true;
          seen.authError = null;
        } else if (event.type === 'handshake:error:auth') seen.authError = `ZAP status ${event.error.status}`;
        else if (event.type === 'handshake:error:protocol' || event.type === 'handshake:error:other')
          seen.protocolError = event.error.message;
      }
    };
    // The event stream ends when the socket closes.
    watch().catch(() => undefined);
    fresh.connect(options.endpoint);
    return fresh;
  };

  const explain = (): { message: string; reason: UnreachableReason } => {
    const base = `no reply from Lighthouse at ${options.endpoint} within ${options.replyTimeoutMs} ms`;
    if (diagnosis.authError) {
      return {
        reason: 'key-refused',
        message: `${base}: Lighthouse refused this worker's Curve key (${diagnosis.authError}); install the worker's public key in Lighthouse's trusted keys (lk-keytool install-trusted-key)`,
      };
    }
    if (diagnosis.connected && !diagnosis.handshakeOk) {
      return {
        reason: 'handshake',
        message: `${base}: the CURVE handshake did not complete${diagnosis.protocolError ? ` (${diagnosis.protocolError})` : ''}; the server public key in ${options.serverKeyFile} is probably not Lighthouse's`,
      };
    }
    if (!diagnosis.connected) return { reason: 'no-connection', message: `${base}: cannot connect (is Lighthouse running and reachable?)` };
    return { reason: 'no-reply', message: base };
  };

  // The link's state as gauges (`spark_lighthouse_link_up`, `_last_contact_seconds`), set with each status change.
  const linkMetrics = () => {
    const metrics = currentMetrics();
    if (!metrics) return;
    const server = { server: options.endpoint };
    metrics.lighthouseLinkUp.set(server, !closed && status.lastContactAt !== null && status.outageSince === null ? 1 : 0);
    if (status.lastContactAt !== null) metrics.lighthouseLastContact.set(server, status.lastContactAt / 1000);
  };
  linkMetrics();

  const publish = () => {
    linkMetrics();
    options.onStatus?.({ ...status });
  };

  const attempt = async (body: RequestBody): Promise<unknown> => {
    if (closed) throw new LighthouseUnreachable('the link to Lighthouse is closed', 'closed');
    const current = (socket ??= open());
    const sentAt = performance.now();
    try {
      await current.send(JSON.stringify({ ...body, ...options.identity }));
      const [frame] = await current.receive();
      const parsed = parseReplyFrame(frame ?? '');
      currentMetrics()?.lighthouseRoundTrip.observe({ request: body.request }, (performance.now() - sentAt) / 1000);
      if (!parsed.ok) currentMetrics()?.lighthouseErrors.inc({ request: body.request, reason: 'unreadable' });
      status.lastContactAt = Date.now();
      if (status.outageSince !== null) {
        logger.info({ outageMs: status.lastContactAt - status.outageSince }, 'Lighthouse answers again');
        status.outageSince = null;
        status.lastError = null;
      }
      publish();
      if (!parsed.ok) throw new UnreadableReply(`Lighthouse sent an unreadable reply: ${parsed.reason}`);
      return parsed.value;
    } catch (error) {
      if (error instanceof UnreadableReply) throw error;
      // Timeout or socket error: this socket may hold a stale request; the next try gets a fresh one.
      currentMetrics()?.lighthouseErrors.inc({ request: body.request, reason: 'no-reply' });
      current.close();
      if (socket === current) socket = null;
      const why = closed ? { message: 'the link to Lighthouse is closed', reason: 'closed' as const } : explain();
      if (status.outageSince === null && !closed) {
        status.outageSince = Date.now();
        logger.error(
          { endpoint: options.endpoint },
          `Lighthouse unreachable: ${why.message}; retrying with backoff (logged once per outage)`,
        );
      }
      status.lastError = why.message;
      publish();
      throw new LighthouseUnreachable(why.message, why.reason);
    }
  };

  const request = (body: RequestBody): Promise<unknown> => {
    const result = queue.then(() => attempt(body));
    queue = result.catch(() => undefined);
    return result;
  };

  return {
    request,
    async requestUntilAnswered(body, signal) {
      for (let tries = 0; ; tries++) {
        if (signal.aborted) throw new LinkAborted(`stopped before Lighthouse answered ${body.request}`);
        try {
          return await request(body);
        } catch (error) {
          if (!(error instanceof LighthouseUnreachable)) throw error;
          if (!(await pause(backoffDelay(options.backoff, tries), signal))) {
            throw new LinkAborted(`stopped before Lighthouse answered ${body.request}`);
          }
        }
      }
    },
    close() {
      closed = true;
      socket?.close();
      socket = null;
      linkMetrics();
    },
  };
}
