import { readdir, readFile } from 'node:fs/promises';
import { createServer, type Socket } from 'node:net';

/*
 * Faults the builder tests inject: an archive that stalls, a Redis that stops
 * (a disk that fills up is @spark/testing's mountTinyDisk).
 */

/** A server that stalls downloads: `/silent/…` accepts and never answers, `/half/…` sends headers and half a body, then nothing. */
export interface StallingServer {
  url: string;
  /** Connections accepted so far. */
  connections(): number;
  close(): Promise<void>;
}

/** Starts a {@link StallingServer} on a free loopback port. */
export async function startStallingServer(): Promise<StallingServer> {
  const sockets: Socket[] = [];
  const server = createServer((socket) => {
    sockets.push(socket);
    socket.once('data', (request) => {
      if (!request.toString('latin1').startsWith('GET /half/')) return;
      socket.write('HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\ncontent-length: 2000\r\n\r\n');
      socket.write('x'.repeat(1000));
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const address = server.address();
  if (address === null || typeof address === 'string') throw new Error('server has no port');
  return {
    url: `http://127.0.0.1:${address.port}`,
    connections: () => sockets.length,
    close: () => {
      for (const socket of sockets) socket.destroy();
      return new Promise((resolve) => server.close(() => resolve()));
    },
  };
}

/** The pid of the `redis-server` listening on `port` (its process title names the address). */
export async function redisServerPid(port: number): Promise<number> {
  for (const entry of await readdir('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    const cmdline = await readFile(`/proc/${entry}/cmdline`, 'utf8').catch(() => '');
    if (/redis-server/.test(cmdline) && cmdline.includes(`:${port}`)) return Number(entry);
  }
  throw new Error(`no redis-server on port ${port}`);
}
