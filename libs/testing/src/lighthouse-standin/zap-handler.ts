import { readdir, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { Router, type Context } from 'zeromq';
import { parseCurveKeyFile, z85Encode } from '@spark/keys';

/** Where libzmq looks for the ZAP handler of a context (ZeroMQ RFC 27). */
export const ZAP_ENDPOINT = 'inproc://zeromq.zap.01';

/** A running ZAP handler. */
export interface ZapHandler {
  /** Z85 public keys refused so far, in order. */
  readonly refused: string[];
  close(): void;
}

/**
 * Loads the Curve public keys of every `*.key` file in `dir`, as pyzmq's
 * `load_certificates` (which Laniakea's authenticator uses) does; files that
 * are not keyfiles are skipped.
 */
export async function loadTrustedKeys(dir: string): Promise<Set<string>> {
  const keys = new Set<string>();
  let names: string[];
  try {
    names = await readdir(dir);
  } catch {
    return keys;
  }
  for (const name of names.filter((entry) => entry.endsWith('.key'))) {
    try {
      const key = parseCurveKeyFile(await readFile(join(dir, name), 'utf8')).curvePublicKey;
      if (key) keys.add(key);
    } catch {
      continue;
    }
  }
  return keys;
}

/**
 * Starts a ZAP handler (RFC 27) in `context`: a ROUTER on
 * {@link ZAP_ENDPOINT} that admits a CURVE client only when its public key is
 * in a `*.key` file of `trustedKeysDir` (read on every handshake, so keys
 * installed later count). zeromq 6 has no authenticator class; libzmq asks this
 * socket about every handshake of a `curveServer` socket in the same context.
 * Must be started before that socket binds.
 */
export async function startZapHandler(context: Context, trustedKeysDir: string): Promise<ZapHandler> {
  const socket = new Router({ context, linger: 0 });
  await socket.bind(ZAP_ENDPOINT);
  const refused: string[] = [];
  const serve = async () => {
    for await (const frames of socket) {
      const [address, , version, requestId, , , , mechanism, credentials] = frames;
      if (!address || !requestId) continue;
      let status = '400';
      let text = 'unsupported ZAP request';
      let userId = '';
      if (version?.toString() === '1.0' && mechanism?.toString() === 'CURVE' && credentials?.length === 32) {
        const key = z85Encode(credentials);
        if ((await loadTrustedKeys(trustedKeysDir)).has(key)) {
          status = '200';
          text = 'OK';
          userId = key;
        } else {
          refused.push(key);
          text = 'public key is not trusted';
        }
      }
      await socket.send([address, '', '1.0', requestId, status, text, userId, '']);
    }
  };
  // The loop ends with an error when the socket is closed; nothing is lost then.
  serve().catch(() => undefined);
  return { refused, close: () => socket.close() };
}
