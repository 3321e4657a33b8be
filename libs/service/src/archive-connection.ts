import { readFileSync } from 'node:fs';
import { isIP } from 'node:net';
import { request as httpRequest, type ClientRequest, type RequestOptions } from 'node:http';
import { request as httpsRequest } from 'node:https';
import { connect as tlsConnect } from 'node:tls';

/** Debian's CA bundle from ca-certificates: what dput-ng (python-requests on Debian) verifies against. */
export const HOST_CA_BUNDLE = '/etc/ssl/certs/ca-certificates.crt';

/**
 * The CA certificates HTTPS uploads verify against: the host's store
 * (`SSL_CERT_FILE`, default {@link HOST_CA_BUNDLE}) plus `NODE_EXTRA_CA_CERTS`,
 * or undefined (Node's bundled list) when the host has no store.
 */
export function hostCertificates(env: NodeJS.ProcessEnv = process.env): string[] | undefined {
  const read = (file: string | undefined) => {
    if (!file) return null;
    try {
      return readFileSync(file, 'utf8');
    } catch {
      return null;
    }
  };
  const store = read(env['SSL_CERT_FILE'] || HOST_CA_BUNDLE);
  if (store === null) return undefined;
  const extra = read(env['NODE_EXTRA_CA_CERTS']);
  return extra === null ? [store] : [store, extra];
}

function envValue(env: NodeJS.ProcessEnv, name: string): string | undefined {
  return env[name] || env[name.toUpperCase()] || undefined;
}

/**
 * The proxy for `target` as curl and python-requests read the environment:
 * `https_proxy` for https, `http_proxy` for http (either case), none when
 * `no_proxy` lists `*`, the host, a domain it ends in (`example.org`,
 * `.example.org`) or `host:port`.
 */
export function proxyFor(target: URL, env: NodeJS.ProcessEnv = process.env): URL | null {
  const proxy = envValue(env, target.protocol === 'https:' ? 'https_proxy' : 'http_proxy');
  if (!proxy) return null;
  const host = target.hostname.replace(/^\[|\]$/g, '').toLowerCase();
  const port = target.port || (target.protocol === 'https:' ? '443' : '80');
  for (const raw of (envValue(env, 'no_proxy') ?? '').split(/[\s,]+/)) {
    const entry = raw.trim().toLowerCase();
    if (entry === '') continue;
    if (entry === '*') return null;
    const [name, entryPort] = entry.includes(':') && !entry.includes(']') ? entry.split(':') : [entry, undefined];
    if (entryPort !== undefined && entryPort !== port) continue;
    const domain = (name ?? '').replace(/^\*?\./, '');
    if (host === domain || host.endsWith(`.${domain}`)) return null;
  }
  return new URL(proxy.includes('://') ? proxy : `http://${proxy}`);
}

function proxyAuthorization(proxy: URL): Record<string, string> {
  if (!proxy.username) return {};
  const credentials = `${decodeURIComponent(proxy.username)}:${decodeURIComponent(proxy.password)}`;
  return { 'proxy-authorization': `Basic ${Buffer.from(credentials).toString('base64')}` };
}

/** Opens a CONNECT tunnel to `target` through `proxy` and resolves with the TLS-wrapped request options. */
function tunnel(target: URL, proxy: URL, ca: string[] | undefined, timeoutMs: number): Promise<RequestOptions> {
  return new Promise((resolve, reject) => {
    const port = target.port || '443';
    const connect = httpRequest({
      host: proxy.hostname,
      port: proxy.port || 80,
      method: 'CONNECT',
      path: `${target.hostname}:${port}`,
      headers: { host: `${target.hostname}:${port}`, ...proxyAuthorization(proxy) },
      timeout: timeoutMs,
    });
    connect.once('timeout', () => connect.destroy(new Error(`proxy ${proxy.host}: no answer to CONNECT within ${timeoutMs} ms`)));
    connect.once('error', (error) => reject(new Error(`proxy ${proxy.host}: ${error.message}`)));
    connect.once('connect', (res, socket) => {
      if (res.statusCode !== 200) {
        socket.destroy();
        reject(new Error(`proxy ${proxy.host} refused CONNECT ${target.hostname}:${port}: ${res.statusCode} ${res.statusMessage ?? ''}`));
        return;
      }
      // No agent: ClientRequest then takes its socket from createConnection.
      resolve({
        // The certificate is checked against `host`; SNI names a host name only (RFC 6066: never an address).
        createConnection: () => {
          const host = target.hostname.replace(/^\[(.*)\]$/, '$1');
          return tlsConnect({ socket, host, ...(isIP(host) ? {} : { servername: host }), ...(ca ? { ca } : {}) });
        },
      });
    });
    connect.end();
  });
}

let certificates: string[] | undefined | null = null;

/**
 * Starts a request to the archive at `url`: https verified against the host's
 * CA store, through the proxy the environment names unless `no_proxy` says
 * otherwise. The caller writes the body and listens for the answer.
 */
export async function archiveRequest(url: string, options: RequestOptions, timeoutMs: number): Promise<ClientRequest> {
  const target = new URL(url);
  const proxy = proxyFor(target);
  if (target.protocol !== 'https:') {
    if (!proxy) return httpRequest(target, options);
    // Plain http through a proxy: the absolute URL as the request target.
    return httpRequest({
      ...options,
      host: proxy.hostname,
      port: proxy.port || 80,
      path: target.href,
      headers: { ...options.headers, host: target.host, ...proxyAuthorization(proxy) },
    });
  }
  if (certificates === null) certificates = hostCertificates();
  const ca = certificates;
  if (!proxy) return httpsRequest(target, { ...options, ...(ca ? { ca } : {}) });
  const tunnelled = await tunnel(target, proxy, ca, timeoutMs);
  return httpsRequest(target, { ...options, ...tunnelled });
}

/**
 * Asks the archive's upload endpoint about `url` without uploading anything:
 * an `OPTIONS` request over the same connection a PUT would take (CA store,
 * proxy), resolving with the HTTP status. lkwebupload (Flask) answers 200 with
 * `Allow: PUT` for an upload location and 404 for a path that is none; other
 * receivers may answer 405. Rejects when no answer comes within `timeoutMs`
 * or the connection fails (refused, TLS certificate not trusted, …).
 */
export async function probeArchive(url: string, timeoutMs: number): Promise<number> {
  const req = await archiveRequest(url, { method: 'OPTIONS', timeout: timeoutMs }, timeoutMs);
  return new Promise((resolve, reject) => {
    req.once('timeout', () => req.destroy(new Error(`no answer from ${new URL(url).host} within ${timeoutMs / 1000} s`)));
    req.once('error', reject);
    req.once('response', (res) => {
      res.resume();
      resolve(res.statusCode ?? 0);
    });
    req.end();
  });
}
