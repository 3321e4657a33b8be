import { readFileSync } from 'node:fs';
import { createServer } from 'node:net';

/** Lowest port {@link freePort} picks: above the well-known and most registered service ports. */
const LOWEST = 10_000;

/**
 * The first port the kernel hands out for a listen on port 0
 * (`net.ipv4.ip_local_port_range`; Linux's default low end where it cannot be read).
 */
function ephemeralLow(): number {
  try {
    const low = Number(readFileSync('/proc/sys/net/ipv4/ip_local_port_range', 'utf8').trim().split(/\s+/)[0]);
    return Number.isInteger(low) && low > LOWEST + 1000 ? low : 32_768;
  } catch {
    return 32_768;
  }
}

/** True when a server could listen on 127.0.0.1:`port` just now. */
function canListen(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const server = createServer();
    server.once('error', () => resolve(false));
    server.listen(port, '127.0.0.1', () => server.close(() => resolve(true)));
  });
}

/**
 * A TCP port on 127.0.0.1 that was free a moment ago, for a server that a
 * config file or command line names. It is picked below the kernel's
 * ephemeral range: a port the kernel chose for a listen on port 0 would be
 * handed out again to the next such listen — any other test server started
 * before the port's user binds it — and that server would answer in its place.
 */
export async function freePort(): Promise<number> {
  const high = ephemeralLow();
  for (let tries = 0; tries < 200; tries++) {
    const port = LOWEST + Math.floor(Math.random() * (high - LOWEST));
    if (await canListen(port)) return port;
  }
  throw new Error(`no free port on 127.0.0.1 between ${LOWEST} and ${high} after 200 tries`);
}
