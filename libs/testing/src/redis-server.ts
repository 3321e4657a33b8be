import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import { createConnection } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { randomBytes } from 'node:crypto';
import { waitFor } from './wait-for.js';

/** A private `redis-server` for one test file or one demo run. */
export interface RedisServer {
  /** `redis://127.0.0.1:<port>` */
  url: string;
  port: number;
  /** Data directory (AOF files live here when `appendOnly` is set). */
  dir: string;
  /** Stops the server (SIGTERM) and waits for it to exit. Safe to call twice. */
  stop(): Promise<void>;
  /** Kills the server (SIGKILL), as a crash would. */
  kill(): Promise<void>;
  /** Starts the server again on the same port and directory (after stop or kill). */
  restart(): Promise<void>;
}

/** Options of {@link startRedisServer}. */
export interface RedisServerOptions {
  /** Keep an append-only file (fsync always) so a restart loses nothing. Default false (`--save ''`, no persistence). */
  appendOnly?: boolean;
  /** `redis-server` binary. Default `redis-server` from PATH. */
  binary?: string;
  /** More `redis-server` arguments, e.g. `['--aclfile', file]`. */
  args?: string[];
}

/** A unique BullMQ key prefix, so tests sharing a server (they should not) still never share queues. */
export function randomQueuePrefix(): string {
  return `t${randomBytes(6).toString('hex')}`;
}

/**
 * Starts Debian's `redis-server` on a free loopback port with its data in a
 * new temp dir and `maxmemory-policy noeviction` (BullMQ's requirement).
 * Resolves once it answers PING.
 */
export async function startRedisServer(options: RedisServerOptions = {}): Promise<RedisServer> {
  const dir = await mkdtemp(join(tmpdir(), 'spark-redis-'));
  const binary = options.binary ?? 'redis-server';
  let child: ChildProcess | null = null;
  let port = 0;

  const launch = async (): Promise<void> => {
    for (let attempt = 0; attempt < 20; attempt++) {
      const candidate = port || 20000 + Math.floor(Math.random() * 40000);
      const args = [
        '--port',
        String(candidate),
        '--bind',
        '127.0.0.1',
        '--dir',
        dir,
        '--save',
        '',
        '--appendonly',
        options.appendOnly ? 'yes' : 'no',
        '--appendfsync',
        'always',
        '--maxmemory-policy',
        'noeviction',
        '--daemonize',
        'no',
        '--logfile',
        join(dir, 'redis.log'),
        ...(options.args ?? []),
      ];
      const proc = spawn(binary, args, { stdio: 'ignore' });
      const exited = new Promise<number | null>((resolve) => proc.once('exit', (code) => resolve(code)));
      const spawnError = new Promise<Error>((resolve) => proc.once('error', resolve));
      const ready = await Promise.race([
        waitForPing(candidate).then(() => 'ready' as const),
        exited.then(() => 'exited' as const),
        spawnError.then((error) => {
          throw new Error(`cannot start ${binary}: ${error.message} (install Debian's redis-server)`);
        }),
      ]);
      if (ready === 'ready') {
        child = proc;
        port = candidate;
        return;
      }
      if (port) {
        throw new Error(`redis-server could not restart on port ${port}; see ${join(dir, 'redis.log')}`);
      }
    }
    throw new Error(`redis-server did not start on any of 20 random ports; see ${join(dir, 'redis.log')}`);
  };

  const halt = async (signal: NodeJS.Signals): Promise<void> => {
    const proc = child;
    child = null;
    if (!proc || proc.exitCode !== null || proc.signalCode !== null) return;
    const exited = new Promise<void>((resolve) => proc.once('exit', () => resolve()));
    proc.kill(signal);
    await exited;
  };

  await launch();
  let stopped = false;
  return {
    get url() {
      return `redis://127.0.0.1:${port}`;
    },
    get port() {
      return port;
    },
    dir,
    async stop() {
      if (stopped) return;
      stopped = true;
      await halt('SIGTERM');
      await rm(dir, { recursive: true, force: true });
    },
    kill: () => halt('SIGKILL'),
    async restart() {
      await halt('SIGTERM');
      await launch();
    },
  };
}

async function waitForPing(port: number, timeoutMs = 10_000): Promise<void> {
  await waitFor(`redis-server on port ${port} to answer PING`, () => ping(port), { timeoutMs, intervalMs: 25 });
}

function ping(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = createConnection({ host: '127.0.0.1', port });
    let answer = '';
    socket.setTimeout(500);
    socket.on('connect', () => socket.write('PING\r\n'));
    socket.on('data', (chunk) => {
      answer += chunk.toString();
      if (answer.includes('\r\n')) {
        socket.destroy();
        // With the default user switched off (an ACL file), a server that is up says NOAUTH.
        resolve(answer.startsWith('+PONG') || answer.startsWith('-NOAUTH'));
      }
    });
    socket.on('error', () => resolve(false));
    socket.on('timeout', () => {
      socket.destroy();
      resolve(false);
    });
  });
}
