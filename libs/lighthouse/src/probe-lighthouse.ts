import pino from 'pino';
import type { SparkConfig } from '@spark/config';
import { archiveInfoReplySchema, describeIssues, errorReplySchema, type ArchiveInfo } from '@spark/protocol';
import { KeySetupError, loadConnectorKeys } from './curve-keys.js';
import { DEFAULT_BACKOFF } from './backoff.js';
import { createLighthouseLink, LighthouseUnreachable, UnreadableReply } from './lighthouse-link.js';

/** What one `archive-info` request to Lighthouse showed. */
export type LighthouseProbe =
  | {
      ok: true;
      /** Lighthouse's upload targets, as the connector stores them. */
      archiveInfo: ArchiveInfo;
      /** ms from the request to its reply. */
      roundTripMs: number;
    }
  | {
      ok: false;
      /**
       * `keys`: a Curve key file cannot be used (nothing was sent), the CURVE
       * handshake did not complete (the server key is not Lighthouse's), or
       * Lighthouse refused this worker's key;
       * `unreachable`: no connection, or no reply in time on a working link;
       * `refused`: Lighthouse answered with an error or a reply that is not `archive-info`'s.
       */
      kind: 'keys' | 'unreachable' | 'refused';
      /** What is wrong and what to do, naming the file or endpoint. */
      problem: string;
    };

/**
 * Asks Lighthouse for `archive-info` once, exactly as the connector does: the
 * same key files and checks ({@link loadConnectorKeys}), the same CURVE REQ
 * socket and identity fields ({@link createLighthouseLink}), the same reply
 * timeout (`[connector] ReplyTimeout`). `archive-info` only reads, so asking
 * it beside a running connector changes nothing at Lighthouse. Writes nothing
 * to Redis and logs nothing.
 */
export async function probeLighthouse(
  config: Pick<
    SparkConfig,
    'lighthouseServer' | 'curveSecretKeyFile' | 'lighthouseServerKeyFile' | 'machineName' | 'machineId' | 'connector'
  >,
): Promise<LighthouseProbe> {
  let keys;
  try {
    keys = loadConnectorKeys(config);
  } catch (error) {
    if (error instanceof KeySetupError) return { ok: false, kind: 'keys', problem: error.message };
    throw error;
  }
  const link = createLighthouseLink({
    endpoint: config.lighthouseServer,
    keys,
    identity: { machine_name: config.machineName, machine_id: config.machineId },
    replyTimeoutMs: config.connector.replyTimeoutMs,
    backoff: DEFAULT_BACKOFF,
    serverKeyFile: config.lighthouseServerKeyFile,
    // The link logs an outage for the connector's journal; here the result says it.
    logger: pino({ level: 'silent' }),
  });
  const sentAt = performance.now();
  try {
    const reply = await link.request({ request: 'archive-info' });
    const roundTripMs = performance.now() - sentAt;
    const refusal = errorReplySchema.safeParse(reply);
    if (refusal.success) return { ok: false, kind: 'refused', problem: `Lighthouse refused archive-info: ${refusal.data.error}` };
    const info = archiveInfoReplySchema.safeParse(reply);
    if (!info.success) {
      return { ok: false, kind: 'refused', problem: `Lighthouse's archive-info reply is malformed: ${describeIssues(info.error)}` };
    }
    return { ok: true, archiveInfo: info.data, roundTripMs };
  } catch (error) {
    if (error instanceof LighthouseUnreachable) {
      const keys = error.reason === 'handshake' || error.reason === 'key-refused';
      return { ok: false, kind: keys ? 'keys' : 'unreachable', problem: error.message };
    }
    if (error instanceof UnreadableReply) return { ok: false, kind: 'refused', problem: error.message };
    throw error;
  } finally {
    link.close();
  }
}
