import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { createServer, type Server } from 'node:net';
import { describe, it } from 'node:test';
import { freePort } from '../src/free-port.js';

function listen(port: number): Promise<Server> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.once('error', reject);
    server.listen(port, '127.0.0.1', () => resolve(server));
  });
}

describe('freePort', () => {
  it('gives a port below the kernel’s ephemeral range, which a server started on port 0 meanwhile cannot take', async () => {
    const low = Number(readFileSync('/proc/sys/net/ipv4/ip_local_port_range', 'utf8').trim().split(/\s+/)[0]);
    const port = await freePort();
    assert.ok(port >= 10_000 && port < low, `port ${port}, ephemeral range from ${low}`);
    // Other servers start on port 0 before the port's user binds it: none of them gets it.
    const others = await Promise.all(Array.from({ length: 20 }, () => listen(0)));
    try {
      assert.ok(others.every((server) => (server.address() as { port: number }).port !== port));
      const server = await listen(port);
      await new Promise((resolve) => server.close(resolve));
    } finally {
      await Promise.all(others.map((server) => new Promise((resolve) => server.close(resolve))));
    }
  });
});
